"""Hostile: returns a tensor far larger than any reply may be (1 GiB)."""
import torch


def pairwise_distances(x, y=None):
    return torch.zeros(1 << 28)


nearest_neighbors = pairwise_distances
