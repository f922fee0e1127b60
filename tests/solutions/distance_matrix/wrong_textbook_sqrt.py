"""Mutant: the notes' own solution: sqrt of the summed squares, NaN gradient at zero distance.

expect-fail: test_gradient_at_zero_distance
expect-message: NaN
"""
import torch


def pairwise_distances(x, y=None):
    y = x if y is None else y
    return torch.sqrt(((x.unsqueeze(1) - y.unsqueeze(0)) ** 2).sum(dim=-1))


def nearest_neighbors(x):
    d = pairwise_distances(x)
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)
