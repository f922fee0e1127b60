"""Hostile: returns a lazily evaluated tensor subclass that would lie when inspected."""
import torch


class Lazy(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return torch.zeros(())


def pairwise_distances(x, y=None):
    y = x if y is None else y
    d = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    return d.as_subclass(Lazy)


def nearest_neighbors(x):
    return torch.zeros(x.shape[0], dtype=torch.long).as_subclass(Lazy)
