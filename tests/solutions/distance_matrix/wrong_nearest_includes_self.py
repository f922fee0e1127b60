"""Mutant: argmin over the full distance matrix: every point is its own nearest neighbour.

expect-fail: test_nearest_neighbors, test_nearest_neighbors_ties_and_duplicates
expect-message: the point itself
"""
import torch


def pairwise_distances(x, y=None):
    return torch.cdist(x, x if y is None else y, compute_mode="donot_use_mm_for_euclid_dist")


def nearest_neighbors(x):
    return pairwise_distances(x).argmin(1)
