"""Hostile: returns things that are not tensors."""
import numpy as np


def pairwise_distances(x, y=None):
    y = x if y is None else y
    return ((x[:, None] - y[None]) ** 2).sum(-1).sqrt().tolist()


def nearest_neighbors(x):
    return np.zeros(x.shape[0], dtype=np.int64)
