"""Hostile: prints gigabytes."""
import sys

LINE = "spam " * 200000 + "\n"


def pairwise_distances(x, y=None):
    while True:
        sys.stdout.write(LINE)
        sys.stderr.write(LINE)


nearest_neighbors = pairwise_distances
