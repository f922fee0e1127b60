"""Hostile: os._exit(0) in the middle of a call; nearest_neighbors is fine."""
import os

import torch


def pairwise_distances(x, y=None):
    os._exit(0)


def nearest_neighbors(x):
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)
