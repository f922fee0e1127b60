"""Hostile: writes a forged frame straight onto the reply channel, claiming 1 TiB."""
import os
import struct
import sys


def pairwise_distances(x, y=None):
    fd = int(sys.argv[sys.argv.index("--fd-out") + 1])
    os.write(fd, struct.pack("<Q", 1 << 40) + b"garbage")
    import time
    time.sleep(60)


nearest_neighbors = pairwise_distances
