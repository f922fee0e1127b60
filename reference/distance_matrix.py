"""Reference solution for distance_matrix (hidden from students).

Broadcast differences, as the notes teach, so any textbook-style solution
meets the speed budget.  The square root is only evaluated where the squared
distance is positive: at zero its derivative is infinite, and masking after
the fact still lets NaN into the gradient (0 * inf).
"""
import torch


def pairwise_distances(x, y=None):
    if y is None:
        y = x
    squared = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(dim=-1)
    positive = squared > 0
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, safe.sqrt(), torch.zeros_like(squared))


def nearest_neighbors(x):
    d = pairwise_distances(x)
    d = d.masked_fill(torch.eye(x.shape[0], dtype=torch.bool, device=x.device), float("inf"))
    return d.argmin(dim=1)
