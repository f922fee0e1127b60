"""Hostile: allocates until memory runs out."""
import torch


def pairwise_distances(x, y=None):
    hoard = []
    while True:
        hoard.append(torch.ones(1 << 27))   # 512 MiB at a time, touched


nearest_neighbors = pairwise_distances
