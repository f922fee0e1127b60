"""Mutant: centred Gram formulation without clamping at zero: sqrt of tiny negatives is NaN.

expect-fail: test_no_nan_for_coincident_points
expect-message: NaN
"""
import torch


def pairwise_distances(x, y=None):
    same = y is None
    y = x if same else y
    c = torch.cat([x, y]).mean(0)
    xc, yc = x - c, y - c
    sq = (xc * xc).sum(1)[:, None] + (yc * yc).sum(1)[None, :] - 2 * xc @ yc.T
    if same:
        sq = sq.masked_fill(torch.eye(x.shape[0], dtype=torch.bool, device=x.device), 0)
    return sq.sqrt()


def nearest_neighbors(x):
    d = pairwise_distances(x)
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)
