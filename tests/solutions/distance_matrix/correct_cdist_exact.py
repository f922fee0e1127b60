"""Correct: torch.cdist in its exact (no matmul) mode."""
import torch


def pairwise_distances(x, y=None):
    return torch.cdist(x, x if y is None else y, compute_mode="donot_use_mm_for_euclid_dist")


def nearest_neighbors(x):
    n = x.shape[0]
    d = pairwise_distances(x) + torch.diag(torch.full((n,), float("inf"), dtype=x.dtype, device=x.device))
    return d.min(dim=1).indices
