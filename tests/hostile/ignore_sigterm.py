"""Hostile: ignores SIGTERM/SIGINT/SIGHUP and loops forever."""
import signal

for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)


def pairwise_distances(x, y=None):
    while True:
        try:
            pass
        except BaseException:
            pass


nearest_neighbors = pairwise_distances
