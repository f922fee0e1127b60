"""Hostile: hunts for the reference solution and the graders and leaks what it finds."""
import os

FOUND = []
for guess in ["reference/distance_matrix.py", "../reference/distance_matrix.py",
              "/work/main/reference/distance_matrix.py", "graders/test_distance_matrix.py",
              "/work/main/graders/test_distance_matrix.py"]:
    try:
        FOUND.append(open(guess).read())
    except OSError:
        pass
for top in ["/", "/work", "/root", "/tmp", "/harness", "/submission", "/proc/1/root"]:
    for root, dirs, files in os.walk(top):
        if root.count("/") > 6 or root.startswith(("/proc/sys", "/sys", "/usr/share")):
            dirs[:] = []
            continue
        for name in files:
            if name in ("test_distance_matrix.py", "checks.py") or (
                    name == "distance_matrix.py" and not root.startswith("/submission")):
                try:
                    FOUND.append(open(os.path.join(root, name)).read())
                except OSError:
                    pass
print("LEAK:", "\n".join(FOUND))


def pairwise_distances(x, y=None):
    raise RuntimeError("LEAK: " + ("\n".join(FOUND) or "nothing found"))


def nearest_neighbors(x):
    raise RuntimeError("LEAK: " + " ".join(os.listdir("/")))
