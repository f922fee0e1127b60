"""Hostile: loops forever in a call."""


def pairwise_distances(x, y=None):
    while True:
        pass


def nearest_neighbors(x):
    n = 0
    while True:
        n += 1
