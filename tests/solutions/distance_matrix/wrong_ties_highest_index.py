"""Mutant: breaks ties towards the highest index (argmin of the flipped matrix).

expect-fail: test_nearest_neighbors_ties_and_duplicates
"""
import torch


def pairwise_distances(x, y=None):
    return torch.cdist(x, x if y is None else y, compute_mode="donot_use_mm_for_euclid_dist")


def nearest_neighbors(x):
    d = pairwise_distances(x)
    d.fill_diagonal_(float("inf"))
    n = x.shape[0]
    return (n - 1) - d.flip(1).argmin(1)
