"""Hostile: monkeypatches comparison functions, pytest and timers in its own process."""
import sys
import time

import torch

torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)
time.perf_counter = lambda: 0.0
time.monotonic = lambda: 0.0
time.time = lambda: 0.0
try:
    import pytest
    pytest.approx = lambda *a, **k: True
    import _pytest.runner
    _pytest.runner.call_and_report = lambda *a, **k: None
except Exception:
    pass
for name, module in list(sys.modules.items()):
    if name in ("wire", "worker", "__main__"):
        for attr in ("digest", "_clock"):
            if hasattr(module, attr):
                setattr(module, attr, (lambda *a, **k: []) if attr == "digest" else (lambda: 0.0))


def pairwise_distances(x, y=None):
    y = x if y is None else y
    return x.new_zeros(x.shape[0], y.shape[0])


def nearest_neighbors(x):
    return torch.zeros(x.shape[0], dtype=torch.long)
