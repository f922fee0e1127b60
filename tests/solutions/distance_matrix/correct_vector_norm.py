"""Correct: torch.linalg.vector_norm of broadcast differences; ranks by squared distance."""
import torch
from torch import linalg


def pairwise_distances(x, y=None):
    other = x if y is None else y
    return linalg.vector_norm(x[:, None, :] - other[None, :, :], ord=2, dim=2)


def nearest_neighbors(x):
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    sq = sq + torch.where(torch.eye(len(x), dtype=torch.bool, device=x.device), torch.inf, 0.0)
    return sq.argmin(1).long()
