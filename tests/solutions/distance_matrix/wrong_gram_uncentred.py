"""Mutant: ||x||^2 + ||y||^2 - 2 x.y without centring (catastrophic cancellation near 1e4).

expect-fail: test_data_far_from_origin
expect-message: data near 1e4
"""
import torch


def pairwise_distances(x, y=None):
    same = y is None
    y = x if same else y
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    sq = sq.clamp_min(0)
    if same:
        sq = sq.masked_fill(torch.eye(x.shape[0], dtype=torch.bool, device=x.device), 0)
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, 1).sqrt(), 0)


def nearest_neighbors(x):
    d = pairwise_distances(x)
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)
