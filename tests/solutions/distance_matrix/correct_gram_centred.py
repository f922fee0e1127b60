"""Correct: centred Gram-matrix formulation (faster than broadcasting)."""
import torch


def pairwise_distances(x, y=None):
    same = y is None
    y = x if same else y
    centre = torch.cat([x, y]).mean(dim=0, keepdim=True)
    xc, yc = x - centre, y - centre
    sq = (xc * xc).sum(1)[:, None] + (yc * yc).sum(1)[None, :] - 2 * xc @ yc.T
    sq = sq.clamp_min(0)
    if same:
        eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
        sq = sq.masked_fill(eye, 0)
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, 1).sqrt(), 0)


def nearest_neighbors(x):
    d = pairwise_distances(x)
    d.fill_diagonal_(float("inf"))
    return torch.argmin(d, dim=1)
