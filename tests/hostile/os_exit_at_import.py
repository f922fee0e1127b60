"""Hostile: os._exit(0) at import (skips every handler)."""
import os

os._exit(0)


def pairwise_distances(x, y=None):
    return x
