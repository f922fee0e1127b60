"""Mutant: torch.cdist in its default mode (matmul for more than 25 rows): diagonal not zero, offset data off.

expect-fail: test_zero_diagonal, test_data_far_from_origin
expect-message: diagonal
"""
import torch


def pairwise_distances(x, y=None):
    return torch.cdist(x, x if y is None else y)


def nearest_neighbors(x):
    d = pairwise_distances(x)
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)
