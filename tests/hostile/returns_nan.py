"""Hostile: returns NaN everywhere."""
import torch


def pairwise_distances(x, y=None):
    y = x if y is None else y
    return torch.full((x.shape[0], y.shape[0]), float("nan"), dtype=x.dtype)


def nearest_neighbors(x):
    return torch.full((x.shape[0],), -1, dtype=torch.long)
