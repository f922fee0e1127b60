"""Each local grading process on its own share of the CPUs (``grade batch --jobs N``).

Without this, a submission that starts as many busy threads as it may (RLIMIT_NPROC) takes
CPU time from every other grading on the machine.  With it, it slows only its own grading
process; seccomp refuses sched_setaffinity, so a worker cannot widen its set.  Memory, time
and output are bounded per worker elsewhere (runner/sandbox.py).
"""
from __future__ import annotations

import os

from distributed.diagnostics.plugin import WorkerPlugin


def cpu_slices(n_workers: int, cpus: set[int] | None = None) -> list[tuple[int, ...]]:
    """This machine's CPUs cut into one contiguous share per local grading process (shares
    repeat when there are more processes than CPUs)."""
    available = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if n_workers >= len(available):
        return [(available[i % len(available)],) for i in range(n_workers)]
    size, extra = divmod(len(available), n_workers)
    slices, start = [], 0
    for i in range(n_workers):
        end = start + size + (1 if i < extra else 0)
        slices.append(tuple(available[start:end]))
        start = end
    return slices


def pin_process(cpus) -> None:
    """Every thread of this process onto `cpus`; processes it starts later inherit them."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, ValueError):
            pass   # a thread that ended meanwhile


class PinCpus(WorkerPlugin):
    """Dask worker plugin: each LocalCluster worker (named 0..N-1) takes its own share of the
    CPUs, also when its nanny restarts it.  A student's threads then compete only with their
    own grading process, and a worker cannot widen its set (seccomp refuses sched_setaffinity)."""

    name = "grade-pin-cpus"

    def __init__(self, slices: list[tuple[int, ...]]):
        self.slices = slices

    def setup(self, worker) -> None:
        pin_process(self.slices[int(worker.name) % len(self.slices)])
