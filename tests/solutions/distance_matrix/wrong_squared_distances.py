"""Mutant: returns squared distances (forgot the square root).

expect-fail: test_matches_float64_truth, test_data_far_from_origin
expect-message: not close enough
"""
import torch


def pairwise_distances(x, y=None):
    y = x if y is None else y
    return ((x[:, None] - y[None]) ** 2).sum(-1)


def nearest_neighbors(x):
    d = pairwise_distances(x)
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)
