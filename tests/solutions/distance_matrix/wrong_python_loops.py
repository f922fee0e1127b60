"""Mutant: computes the right numbers with Python loops.

expect-fail: test_no_python_loops
expect-message: for loop
"""
import torch


def pairwise_distances(x, y=None):
    y = x if y is None else y
    rows = []
    for i in range(x.shape[0]):
        diff = x[i] - y
        sq = (diff * diff).sum(1)
        pos = sq > 0
        rows.append(torch.where(pos, torch.where(pos, sq, 1).sqrt(), 0))
    return torch.stack(rows)


def nearest_neighbors(x):
    d = pairwise_distances(x)
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)
