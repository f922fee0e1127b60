"""Hostile: sys.exit(0) at import."""
import sys

sys.exit(0)


def pairwise_distances(x, y=None):
    return x
