"""The checks library: everything a grader needs to be short and right.

A grader is a pytest file ``graders/test_<exercise>.py``.  Its tests take
fixtures provided by the grading plugin:

    student, reference   the submission / the reference solution, each in its
                         own sandboxed worker (see runner.client for the calls)
    submission           the submission's source and AST (static checks)
    rng                  a torch.Generator seeded from this run's secret seed
    device               "cpu" or "cuda"
    exercise             the exercise manifest (limits, banned APIs, settings)
    note                 note("...") adds a remark to the test's message

and use the helpers below, which raise ``Failure`` with a message that names
the mistake.  Decorate tests with ``@points(n)``, optionally ``@hidden``,
``@hint("...")`` (shown when the test fails) and ``@gpu`` (skipped, and left
out of the maximum, on machines without CUDA).

Messages must never reveal reference values or hidden inputs: the helpers
report errors (how far off, where), never the expected numbers.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import pytest
import torch

from runner import static, timing
from runner.client import GradResult, RemoteCallable, RemoteObject, StudentRaised

__all__ = [
    "Failure", "fail", "points", "hidden", "hint", "gpu",
    "tolerance", "expect_tensor", "assert_close", "assert_equal", "assert_finite",
    "assert_raises", "assert_grads_close", "numerical_gradcheck", "assert_no_loops",
    "assert_ops_absent", "measure_speed", "assert_speed", "randn", "GradResult",
]


# ---- verdicts and markers ----------------------------------------------------

class Failure(AssertionError):
    """A check failed; the message is shown to the student as is."""


def fail(message: str):
    raise Failure(message)


def points(n: float):
    """``@points(2)``: the test is worth ``n`` points."""
    return pytest.mark.points(n)


hidden = pytest.mark.visibility("hidden")
"""``@hidden``: results are hidden from students (Gradescope visibility "hidden")."""


def hint(text: str):
    """``@hint("...")``: advice appended to the message when the test fails."""
    return pytest.mark.hint(text)


gpu = pytest.mark.gpu
"""``@gpu``: needs CUDA; skipped ("no GPU") and left out of the maximum without it."""


# ---- inputs --------------------------------------------------------------------

def randn(rng: torch.Generator, *shape: int, dtype=torch.float32, scale: float = 1.0,
          offset: float = 0.0) -> torch.Tensor:
    """Normal samples from the run's secret-seeded generator (never all-trivial)."""
    return (torch.randn(shape, generator=rng, dtype=torch.float64) * scale + offset).to(dtype)


# ---- tensors and tolerances ------------------------------------------------------

def tolerance(dtype: torch.dtype, ulps: float = 4.0) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing values of ``dtype`` of order one.

    ``rtol`` is ``ulps`` units in the last place; ``atol`` the same at
    magnitude one (scale it with ``atol_scale`` in ``assert_close``).  A
    one-ulp difference in float16 passes at the default.
    """
    if not dtype.is_floating_point:
        return 0.0, 0.0
    eps = torch.finfo(dtype).eps
    return ulps * eps, ulps * eps


def _describe(value) -> str:
    if isinstance(value, RemoteObject):
        return f"a {value.type_name} object"
    return f"a {type(value).__name__}"


def expect_tensor(value, *, what: str, shape: Sequence[int] | None = None,
                  dtype: torch.dtype | None = None, device: str | None = None) -> torch.Tensor:
    """Fail unless ``value`` is a tensor with the given shape, dtype and device type."""
    if not isinstance(value, torch.Tensor):
        fail(f"{what} should be a torch.Tensor, got {_describe(value)}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        fail(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if dtype is not None and value.dtype != dtype:
        fail(f"{what} has dtype {value.dtype}, expected {dtype}")
    if device is not None and value.device.type != torch.device(device).type:
        fail(f"{what} is on {value.device.type}, expected {torch.device(device).type} "
             "(the same device as the input)")
    return value


def _where(flat_index: int, shape) -> str:
    if not shape:
        return "the value"
    idx = []
    for size in reversed(shape):
        idx.append(flat_index % size)
        flat_index //= size
    return "index " + str(tuple(reversed(idx)))


def assert_finite(value: torch.Tensor, *, what: str) -> None:
    """Fail if ``value`` has NaN or infinity anywhere."""
    expect_tensor(value, what=what)
    if value.is_floating_point():
        bad = ~torch.isfinite(value)
        if bad.any():
            first = int(bad.flatten().nonzero()[0])
            kind = "NaN" if torch.isnan(value.flatten()[first]) else "infinity"
            fail(f"{what} contains NaN or infinity at {int(bad.sum())} of {value.numel()} "
                 f"positions (first: {kind} at {_where(first, tuple(value.shape))})")


def assert_close(actual, expected: torch.Tensor, *, what: str, dtype: torch.dtype | None = None,
                 rtol: float | None = None, atol: float | torch.Tensor | None = None, ulps: float = 4.0,
                 atol_scale: float = 1.0, check_dtype: bool = True, check_device: bool = True,
                 equal_nan: bool = False) -> None:
    """Fail unless ``actual`` matches ``expected`` within a dtype-aware tolerance.

    ``expected`` may be more precise than ``actual`` (a float64 ground truth):
    the tolerance comes from ``dtype`` (default: ``expected.dtype``), and the
    comparison is done in float64.  Default ``rtol``/``atol`` come from
    ``tolerance(dtype, ulps)``; ``atol`` is multiplied by ``atol_scale``.
    ``atol`` may also be a tensor broadcastable to ``expected``: a tolerance
    per element (e.g. ``ulps * eps * per_channel_scale`` with ``rtol=0``).
    The message gives how many elements are off, the largest absolute and
    relative errors and where, and never the expected values.
    """
    dtype = dtype or expected.dtype
    expect_tensor(actual, what=what, shape=tuple(expected.shape))
    if check_dtype and actual.dtype != dtype:
        fail(f"{what} has dtype {actual.dtype}, expected {dtype}")
    if check_device and actual.device.type != expected.device.type:
        fail(f"{what} is on {actual.device.type}, expected {expected.device.type}")
    d_rtol, d_atol = tolerance(dtype, ulps)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol * atol_scale if atol is None else atol
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if a.numel() == 0:
        return
    same = (a == e) | (torch.isnan(a) & torch.isnan(e) & equal_nan)
    surprise = ~torch.isfinite(a) & torch.isfinite(e)
    if surprise.any():
        first = int(surprise.flatten().nonzero()[0])
        fail(f"{what} contains NaN or infinity at {int(surprise.sum())} of {a.numel()} positions "
             f"where a finite value is expected (first at {_where(first, tuple(a.shape))})")
    err = (a - e).abs()
    err = torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf))
    err = torch.where(same, torch.zeros_like(err), err)
    if isinstance(atol, torch.Tensor):
        atol = atol.detach().to("cpu", torch.float64)
    bad = err > atol + rtol * e.abs().nan_to_num(nan=0.0, posinf=0.0)
    if bad.any():
        worst = int(err.flatten().argmax())
        nonzero = bad & (e != 0)
        rel = ""
        if nonzero.any():
            rel = f", max relative error {float((err[nonzero] / e.abs()[nonzero]).max()):.3g}"
        atol_text = f"{atol:.1e}" if not isinstance(atol, torch.Tensor) else "per element"
        fail(f"{what} is not close enough: {int(bad.sum())} of {a.numel()} elements are outside "
             f"the tolerance (rtol={rtol:.1e}, atol={atol_text}); max abs error {float(err.max()):.3g} "
             f"at {_where(worst, tuple(a.shape))}{rel}")


def assert_equal(actual, expected: torch.Tensor, *, what: str) -> None:
    """Exact equality (indices, integer results, shapes)."""
    expect_tensor(actual, what=what, shape=tuple(expected.shape), dtype=expected.dtype)
    wrong = actual.cpu() != expected.cpu()
    if wrong.any():
        first = int(wrong.flatten().nonzero()[0])
        fail(f"{what} is wrong at {int(wrong.sum())} of {actual.numel()} positions "
             f"(first at {_where(first, tuple(actual.shape))})")


def assert_raises(exc_type: type[BaseException] | str, fn: Callable, *args, what: str,
                  match: str | None = None, **kwargs) -> None:
    """Fail unless calling the remote ``fn`` raises ``exc_type`` (a name or a class).

    A NotImplementedError from a stub propagates (the test counts as not
    implemented, not as a wrong exception).
    """
    name = exc_type if isinstance(exc_type, str) else exc_type.__name__
    try:
        fn(*args, **kwargs)
    except StudentRaised as e:
        if e.exc_type == "NotImplementedError" and name != "NotImplementedError":
            raise
        if e.exc_type != name:
            fail(f"{what} should raise {name}, but raised {e.exc_type}: {e.message[:200]}")
        if match and match.lower() not in e.message.lower():
            fail(f"{what} raised {name}, but its message should mention {match!r}")
        return
    fail(f"{what} should raise {name}, but returned normally")


# ---- gradients ---------------------------------------------------------------------

def assert_grads_close(got: GradResult, want: GradResult, *, what: str,
                       dtype: torch.dtype | None = None, ulps: float = 16.0,
                       atol_scale: float = 1.0, names: Iterable[str] | None = None) -> None:
    """Compare input and parameter gradients of two backward passes."""
    for i, (g, w) in enumerate(zip(got.input_grads, want.input_grads)):
        label = f"the gradient of {what} with respect to input {i}"
        if w is None:
            continue
        if g is None:
            fail(f"{label} is missing: the output does not depend on this input through autograd")
        assert_finite(g, what=label)
        assert_close(g, w, what=label, dtype=dtype or w.dtype, ulps=ulps, atol_scale=atol_scale)
    wanted = set(names) if names is not None else set(want.param_grads)
    for name in sorted(wanted):
        w = want.param_grads.get(name)
        g = got.param_grads.get(name)
        label = f"the gradient of {what} with respect to parameter {name!r}"
        if name not in got.param_grads:
            fail(f"{what}: parameter {name!r} is missing or does not require grad")
        if w is None:
            continue
        if g is None:
            fail(f"{label} is missing: the parameter is not used, or is detached from the output")
        assert_finite(g, what=label)
        assert_close(g, w, what=label, dtype=dtype or w.dtype, ulps=ulps, atol_scale=atol_scale)


def numerical_gradcheck(fn: RemoteCallable, inputs: Sequence[torch.Tensor], *, what: str,
                        eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                        rng: torch.Generator | None = None, directions: int = 4) -> None:
    """A float64 gradient check computed here, in the judge, from worker forward calls.

    The analytical side is the submission's own backward (a vector-Jacobian
    product with a random vector ``v``); the numerical side is central finite
    differences of ``v . f(x)`` along every input coordinate (small inputs) or
    along ``directions`` random directions (large ones).  Nothing in the
    submission's process decides the verdict.
    """
    inputs = [x.detach().to(torch.float64) for x in inputs]
    out = fn(*inputs)
    expect_tensor(out, what=f"{what} (float64 input)", dtype=torch.float64)
    g = torch.Generator().manual_seed(1234) if rng is None else rng
    v = torch.randn(out.shape, generator=g, dtype=torch.float64)
    analytic = fn.with_grad(v, wrt=list(range(len(inputs))))(*inputs)
    for k, x in enumerate(inputs):
        grad = analytic.input_grads[k]
        if grad is None:
            fail(f"{what}: no gradient flows to input {k}")
        expect_tensor(grad, what=f"the gradient of {what}", shape=tuple(x.shape), dtype=torch.float64)
        if x.numel() <= 64:
            dirs = [torch.zeros(x.numel(), dtype=torch.float64).index_fill_(0, torch.tensor([j]), 1.0)
                    .view_as(x) for j in range(x.numel())]
        else:
            dirs = [torch.randn(x.shape, generator=g, dtype=torch.float64) for _ in range(directions)]
        arg_lists = []
        for d in dirs:
            for sign in (1.0, -1.0):
                args = list(inputs)
                args[k] = x + sign * eps * d
                arg_lists.append(args)
        outs = fn.call_many(arg_lists)
        for j, d in enumerate(dirs):
            plus, minus = outs[2 * j], outs[2 * j + 1]
            expect_tensor(plus, what=what, shape=tuple(out.shape))
            numeric = float(((plus - minus) * v).sum()) / (2 * eps)
            analytic_dir = float((grad * d).sum())
            if not math.isfinite(analytic_dir) or abs(numeric - analytic_dir) > atol + rtol * abs(numeric):
                where = (f"at {_where(int(d.flatten().argmax()), tuple(x.shape))}" if x.numel() <= 64
                         else "along a random direction")
                fail(f"gradcheck of {what} failed {where}: backward gives {analytic_dir:.6g}, "
                     f"finite differences give {numeric:.6g} (float64, eps={eps:g})")


# ---- static and behavioural API checks ------------------------------------------------

def assert_no_loops(submission, function: str) -> None:
    """Fail if ``function`` (or a helper it calls) has Python loops or comprehensions."""
    if submission.tree is None:
        fail("the file does not parse")
    findings = static.loops_in(submission.tree, function)
    if findings:
        listed = "; ".join(str(f) for f in findings[:3])
        fail(f"{function} must not use Python loops or comprehensions; found {listed}")


def assert_ops_absent(ops: Iterable[str], banned: Iterable[str], *, what: str) -> None:
    """Fail if the traced ATen ops of a call include a banned one."""
    used = sorted(set(ops) & set(banned))
    if used:
        fail(f"{what} runs {', '.join(used)}, which this exercise bans: write it yourself")


# ---- speed -----------------------------------------------------------------------------

def measure_speed(student_fn: RemoteCallable, reference_fn: RemoteCallable,
                  make_inputs: Callable[[int], tuple], *, repeats: int = 5, warmup: int = 1,
                  device: str = "cpu", **kwargs) -> timing.SpeedComparison:
    """Time both arms interleaved on fresh inputs per repeat (see runner.timing)."""
    inputs = [make_inputs(i) for i in range(warmup + repeats)]
    return timing.compare(student_fn, reference_fn, inputs, warmup=warmup,
                          gpu=device.startswith("cuda"), **kwargs)


def assert_speed(result: timing.SpeedComparison, budget: float, *, what: str,
                 outputs_close: Callable[[Any, Any], None] | None = None,
                 flag_speedup: float | None = timing.SUSPICIOUS_SPEEDUP) -> str:
    """Fail if the submission is more than ``budget`` times slower than the reference.

    Outputs of the timed runs are checked too: every repeat by fingerprint,
    and one repeat in full with ``outputs_close(student_value, reference_value)``.
    Returns a note for the report: a speed-up over the reference beyond
    ``flag_speedup`` (default 10x; None: never) is flagged for review, not rewarded.
    """
    if result.mismatched_repeats:
        fail(f"{what}: the output of a timed run differs from the expected result "
             f"({len(result.mismatched_repeats)} of {len(result.student_times)} runs)")
    if outputs_close is not None and result.student_results:
        pick = len(result.student_results) // 2
        outputs_close(result.student_results[pick].fetch(), result.reference_results[pick].fetch())
    ratio = result.ratio
    summary = (f"median {result.student_median * 1e3:.2f} ms vs reference "
               f"{result.reference_median * 1e3:.2f} ms: {ratio:.2f}x (budget {budget:g}x)")
    if ratio > budget:
        fail(f"{what} is too slow: {summary}")
    if flag_speedup is not None and ratio < 1.0 / flag_speedup:
        return f"flagged for review: suspiciously fast ({summary})"
    return summary
