"""Hostile: leaves work running: a busy thread, a detached process, a double fork."""
import os
import subprocess
import threading

NOTES = []


def spin():
    while True:
        pass


threading.Thread(target=spin, daemon=False).start()
try:
    subprocess.Popen(["sleep", "600"], start_new_session=True)
    NOTES.append("spawned sleep")
except OSError as e:
    NOTES.append(f"spawn: {e}")
try:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                pass
        os._exit(0)
    NOTES.append("double-forked")
except OSError as e:
    NOTES.append(f"fork: {e}")


def pairwise_distances(x, y=None):
    raise RuntimeError("; ".join(NOTES))


nearest_neighbors = pairwise_distances
