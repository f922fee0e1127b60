"""Hostile: writes fake full-marks results files everywhere it can and prints one."""
import json
import os

FAKE = {"score": 26, "max_score": 26, "tests": [{"name": "all", "score": 26, "max_score": 26,
                                                  "status": "passed"}]}
TARGETS = ["results.json", "/tmp/results.json", os.path.expanduser("~/results.json"),
           "/autograder/results/results.json", "/work/main/results.json",
           "/work/main/HOSTILE_WAS_HERE", "/submission/results.json", "/harness/wire.py"]
for path in TARGETS:
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump(FAKE, f)
    except OSError:
        pass
print(json.dumps(FAKE))


def pairwise_distances(x, y=None):
    y = x if y is None else y
    return x.new_zeros(x.shape[0], y.shape[0])


def nearest_neighbors(x):
    import torch
    return torch.zeros(x.shape[0], dtype=torch.long)
