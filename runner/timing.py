"""The timing protocol: submission vs reference, measured in the same run.

For every repeat each arm gets fresh inputs (distinct random values, staged
in its worker beforehand, so neither cached outputs nor input transfer count),
the two arms alternate which goes first, and the arm not being timed is
frozen (SIGSTOP) so background work it started cannot slow the other.

On CPU the time is the judge's own wall clock around the call (bound at
import; the submission cannot reach this process), which includes one
small round trip.  On CUDA it is the worker's CUDA-event time around the
call after a synchronize and an L2 flush (see ``worker.GpuTimer``), checked
against the judge's wall clock.  Each timed output is fingerprinted in the
worker and compared with the reference's, so a fast wrong answer fails.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from .client import RemoteCallable, RemoteObject

_clock = time.perf_counter

SUSPICIOUS_SPEEDUP = 10.0


@dataclass
class SpeedComparison:
    student_times: list[float]
    reference_times: list[float]
    mismatched_repeats: list[int] = field(default_factory=list)
    student_results: list[RemoteObject] = field(default_factory=list)
    reference_results: list[RemoteObject] = field(default_factory=list)

    @property
    def student_median(self) -> float:
        return statistics.median(self.student_times)

    @property
    def reference_median(self) -> float:
        return statistics.median(self.reference_times)

    @property
    def ratio(self) -> float:
        return self.student_median / max(self.reference_median, 1e-9)


def _stage(fn: RemoteCallable, args: tuple) -> list:
    worker = fn._worker
    return [worker.request({"op": "stage", "value": a}) if isinstance(a, torch.Tensor) else a
            for a in args]


def digests_agree(a: list, b: list, rtol: float = 1e-3) -> bool:
    """Cheap fingerprints of two outputs agree (shape, dtype, non-finite count, sums)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if not (isinstance(x, dict) and isinstance(y, dict)):
            return False
        if "type" in x or "type" in y:
            if x.get("type") != y.get("type"):
                return False
            continue
        try:
            if list(x["shape"]) != list(y["shape"]) or x["dtype"] != y["dtype"]:
                return False
            if int(x["nonfinite"]) != int(y["nonfinite"]):
                return False
            scale = float(y["abs"]) + 1e-12
            if abs(float(x["sum"]) - float(y["sum"])) > rtol * scale:
                return False
            if abs(float(x["abs"]) - float(y["abs"])) > rtol * scale:
                return False
        except (KeyError, TypeError, ValueError):
            return False
    return True


def compare(student_fn: RemoteCallable, reference_fn: RemoteCallable, inputs: list[tuple],
            *, warmup: int = 1, kwargs: dict | None = None, timeout: float | None = None,
            gpu: bool = False, compare_outputs: bool = True) -> SpeedComparison:
    """Time both arms on ``inputs`` (one tuple of arguments per run; the first
    ``warmup`` runs are not counted).  Returns the comparison; judging it
    against a budget is the grader's job (``checks.assert_speed``).
    ``compare_outputs=False`` when the arms are not meant to agree (e.g. two
    differently initialised models timed on the same step)."""
    kwargs = kwargs or {}
    staged = [(_stage(student_fn, args), _stage(reference_fn, args)) for args in inputs]
    result = SpeedComparison([], [])
    for i, (s_args, r_args) in enumerate(staged):
        arms = [(student_fn, reference_fn, s_args, "s"), (reference_fn, student_fn, r_args, "r")]
        if i % 2:
            arms.reverse()
        digests = {}
        for fn, other, args, who in arms:
            other._worker.pause()
            try:
                timed = fn.timed(*args, timeout=timeout, **kwargs)
            finally:
                other._worker.resume()
            seconds = timed.wall
            if gpu:  # GPU-only: CUDA-event time; it can never exceed the wall clock
                seconds = min(timed.worker_elapsed, timed.wall)
            digests[who] = timed.digest
            if i >= warmup:
                (result.student_times if who == "s" else result.reference_times).append(seconds)
                (result.student_results if who == "s" else result.reference_results).append(timed.result)
        if compare_outputs and i >= warmup and not digests_agree(digests["s"], digests["r"]):
            result.mismatched_repeats.append(i - warmup)
    return result
