"""The judge's side of the channel: drive a sandboxed worker by name.

Graders never import student code.  They get a ``RemoteNamespace`` (the
``student`` and ``reference`` fixtures) whose attributes are remote callables:

    d = student.pairwise_distances(x)          # tensors in, tensors out
    model = student.UNet(base_channels=8)      # non-data results stay remote
    y = model(x); model.eval(); sd = model.state_dict()
    model.attr("training")                     # read an attribute's value
    out, ops = student.my_sigmoid.traced(x)    # ATen ops the call ran
    g = student.pairwise_distances.with_grad(grad_out, wrt=[0])(x)
    student.probe(train_for_steps, model, data, steps=50)   # grader code, run remotely

Everything that comes back is decoded by ``wire.unpack`` (JSON + safetensors,
never pickle) under a size cap.  A worker that dies, hangs or exceeds a limit
raises ``WorkerFailed`` for the call in progress; the next call starts a fresh
worker.
"""
from __future__ import annotations

import inspect
import textwrap
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import wire
from .sandbox import WorkerProcess, WorkerSpec

MEMORY_MARKERS = ("can't allocate memory", "cannot allocate memory", "out of memory",
                  "not enough memory")


class WorkerFailed(Exception):
    """The worker died, hung or broke a limit during a call."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status  # "timeout" | "crashed" | "memory" | "output_limit" | "protocol"
        self.message = message


class StudentRaised(Exception):
    """Code in the worker raised; carries only what the worker reported."""

    def __init__(self, exc_type: str, message: str, traceback: str, harness: bool = False):
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        self.harness = harness

    @property
    def status(self) -> str:
        if self.exc_type == "NotImplementedError":
            return "not_implemented"
        lowered = self.message.lower()
        if self.exc_type == "MemoryError" or any(m in lowered for m in MEMORY_MARKERS):
            return "memory"
        return "error"


class ReferenceFailed(Exception):
    """The reference solution failed: a grader bug, never the student's fault."""


class Deadline:
    """The total wall-clock budget of one submission, shared by all its calls."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()


class Worker:
    """One sandboxed worker role (the student's or the reference's), restarted on demand."""

    def __init__(self, spec: WorkerSpec, mode: str, *, role: str = "student",
                 call_timeout: float = 60.0, startup_timeout: float = 60.0,
                 import_timeout: float | None = None,
                 deadline: Deadline | None = None, max_restarts: int = 6, launcher=None):
        self.spec = spec
        self.launcher = launcher   # a warm.ForkServer, or None: a fresh sandboxed process
        self.mode = mode
        self.role = role
        self.call_timeout = call_timeout
        self.startup_timeout = startup_timeout
        self.import_timeout = import_timeout or call_timeout   # the submission's top-level code
        self.deadline = deadline or Deadline(None)
        self.max_restarts = max_restarts
        self.process: WorkerProcess | None = None
        self.generation = 0
        self.starts = 0
        self.exports: list[str] = []
        self.import_error: StudentRaised | WorkerFailed | None = None
        self.info: dict = {}

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Launch the process without waiting for it (so two can start at once)."""
        if self.process is None:
            remaining = self.deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise WorkerFailed("timeout", f"the submission used up its total time limit "
                                   f"of {self.deadline.seconds:.0f} s")
            if self.starts > self.max_restarts:
                raise WorkerFailed("crashed", f"the worker was restarted {self.max_restarts} "
                                   "times already; giving up on the remaining tests")
            self.starts += 1
            self.generation += 1
            self.process = (self.launcher.spawn(self.spec) if self.launcher is not None
                            else WorkerProcess(self.spec, self.mode))
            self._ready = False

    def ensure_ready(self) -> None:
        if self.import_error is not None:
            raise self.import_error
        self.start()
        if self._ready:
            return
        try:
            hello = self._receive(self.startup_timeout, starting=True)
        except WorkerFailed:
            raise
        if not isinstance(hello, dict) or hello.get("status") != "ready":
            self._fail("protocol", "the worker sent an unexpected greeting")
        self.info = hello
        self._ready = True
        try:
            self.exports = self.request({"op": "load"}, timeout=self.import_timeout) or []
        except StudentRaised as exc:
            exc.message = f"importing your file failed: {exc.exc_type}: {exc.message}"
            self.import_error = exc
            self.stop()
            raise
        except WorkerFailed as exc:
            if exc.status == "timeout":   # it would time out again: fail the other tests at once
                exc.message = (f"importing your file (its top-level code) {exc.message}; code "
                               "that only demonstrates or trains (a notebook's last cells) can go "
                               "under `if __name__ == \"__main__\":`, which grading skips")
                self.import_error = exc
            raise

    def stop(self) -> None:
        if self.process is not None:
            self.process.close()
            self.process = None

    def output(self) -> str:
        return self.process.output() if self.process is not None else ""

    def reset(self) -> None:
        """Forget every object kept for earlier calls (between two gradings)."""
        if self.process is not None and self.process.alive() and self._ready:
            self.request({"op": "reset"})

    def pause(self) -> None:
        if self.process is not None:
            self.process.pause()

    def resume(self) -> None:
        if self.process is not None:
            self.process.resume()

    # -- requests -------------------------------------------------------------
    def request(self, message: dict, timeout: float | None = None) -> Any:
        if message.get("op") != "load":
            self.ensure_ready()
        proc = self.process
        try:
            payload = wire.pack(message, on_unknown=self._as_ref,
                                max_bytes=proc.spec.limits.reply_mb << 20)
        except wire.WireError as e:
            raise ReferenceFailed(f"grader sent an unencodable value: {e}") from None
        try:
            wire.write_frame(proc.fd_out, payload)
        except wire.ChannelClosed:
            self._fail_dead()
        reply = self._receive(timeout or self.call_timeout)
        if not isinstance(reply, dict) or reply.get("status") not in ("ok", "error"):
            self._fail("protocol", "the worker sent a malformed reply")
        if reply["status"] == "error":
            err = reply.get("error")
            if not isinstance(err, dict):
                self._fail("protocol", "the worker sent a malformed error")
            raised = StudentRaised(str(err.get("type", "Exception"))[:100],
                                   str(err.get("message", ""))[:4000],
                                   str(err.get("traceback", ""))[:4000],
                                   bool(err.get("harness", False)))
            if self.role == "reference" or raised.harness:
                raise ReferenceFailed(f"{self.role} worker: {raised.exc_type}: {raised.message}\n"
                                      f"{raised.traceback}")
            raise raised
        return reply.get("value")

    def _receive(self, timeout: float, starting: bool = False):
        proc = self.process
        limit = timeout
        remaining = self.deadline.remaining()
        total_limit_hit = remaining is not None and remaining < limit
        if total_limit_hit:
            limit = max(remaining, 0.0)
        try:
            frame = wire.read_frame(proc.fd_in, proc.spec.limits.reply_mb << 20,
                                    time.monotonic() + limit)
            return wire.unpack(frame, on_ref=self._make_ref, map_device=_map_device)
        except wire.ChannelTimeout:
            if total_limit_hit:
                self._fail("timeout", f"the submission used up its total time limit "
                           f"of {self.deadline.seconds:.0f} s")
            what = "start" if starting else "return"
            self._fail("timeout", f"did not {what} within {limit:.0f} s (time limit)")
        except wire.ChannelClosed:
            self._fail_dead()
        except wire.WireError as e:
            self._fail("protocol", f"the worker's reply was refused: {e}")

    def _fail_dead(self):
        proc = self.process
        proc.wait(5)
        if proc.output_exceeded:
            self._fail("output_limit", f"printed more than {64 * proc.spec.limits.output_bytes >> 20} "
                       "MiB of output; the worker was stopped")
        code = proc.exit_status()
        tail = proc.output().strip()[-600:]
        if code is not None and code < 0:
            how = f"was killed by signal {-code}"
            if -code == 9:
                how += " (out of memory, or a resource limit)"
            elif -code == 24:
                how += " (CPU time limit)"
        else:
            how = f"exited with status {code}"
            if code in (0, 1):
                how += " (sys.exit/os._exit or a fatal error; the worker must keep running)"
        self._fail("crashed", f"the worker process {how}" + (f"; its last output:\n{tail}" if tail else ""))

    def _fail(self, status: str, message: str):
        self.stop()
        if self.role == "reference":
            raise ReferenceFailed(f"reference worker {status}: {message}")
        raise WorkerFailed(status, message)

    def _as_ref(self, value) -> wire.Ref:
        """RemoteObjects travel back to their own worker as handles."""
        if not isinstance(value, RemoteObject) or value._worker is not self:
            raise wire.WireError(f"cannot send a {wire.describe_type(value)} to the {self.role} worker")
        value._check()
        return wire.Ref(value._target["ref"], value.type_name)

    def _make_ref(self, id: int, type_name: str) -> "RemoteObject":
        return RemoteObject(self, {"ref": id}, type_name, self.generation)


def _map_device(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():  # GPU-only
        return device
    return "cpu"


# ---- proxies -----------------------------------------------------------------

@dataclass
class GradResult:
    """Output and gradients of one backward pass computed in the worker."""

    output: Any
    input_grads: list
    param_grads: dict
    ops: list | None = None


@dataclass
class Timed:
    """One timed call: the judge's wall clock, the worker's own figure, a digest."""

    wall: float
    worker_elapsed: float
    digest: list
    result: "RemoteObject"


class RemoteCallable:
    """Something in the worker that can be called: a function, method or object."""

    def __init__(self, worker: Worker, target: dict, generation: int | None = None):
        self._worker = worker
        self._target = target
        self._generation = generation

    def _check(self) -> None:
        if self._generation is not None and self._generation != self._worker.generation:
            raise WorkerFailed("crashed", "this object was lost when an earlier worker crashed")

    def _send(self, message: dict, timeout: float | None = None):
        self._check()
        return self._worker.request(dict(message, target=self._target), timeout)

    def __call__(self, *args, **kwargs):
        return self._send({"op": "call", "args": list(args), "kwargs": kwargs})

    def traced(self, *args, **kwargs) -> tuple[Any, list[str]]:
        """Call and also return the ATen operators the call ran."""
        reply = self._send({"op": "call", "args": list(args), "kwargs": kwargs, "trace_ops": True})
        return reply["value"], reply["ops"]

    def call_many(self, arg_lists: list[list]) -> list:
        """Call once per argument list, in one round trip."""
        return self._send({"op": "call_many", "arg_list": [list(a) for a in arg_lists]})

    def with_grad(self, grad_output, wrt=(0,), params: bool = False, trace_ops: bool = False):
        """``f.with_grad(g, wrt=[0])(x, y)`` -> GradResult of a backward pass with ``g``."""
        def run(*args, **kwargs) -> GradResult:
            reply = self._send({"op": "vjp", "args": list(args), "kwargs": kwargs,
                                "grad_output": grad_output, "wrt": list(wrt),
                                "params": params, "trace_ops": trace_ops})
            return GradResult(reply["output"], reply["input_grads"], reply["param_grads"],
                              reply.get("ops"))
        return run

    def timed(self, *args, timeout: float | None = None, **kwargs) -> Timed:
        """One timed call; the wall clock is the judge's, bound at import."""
        start = _clock()
        reply = self._send({"op": "timed", "args": list(args), "kwargs": kwargs}, timeout)
        wall = _clock() - start
        return Timed(wall, float(reply["elapsed"]), reply["digest"], reply["result"])


    def peak_memory(self, *args, **kwargs) -> tuple[int | None, "RemoteObject"]:
        """(peak CUDA bytes allocated during the call, or None on CPU; the result, kept remote).

        The worker binds the memory-statistics functions before the submission loads.
        """
        reply = self._send({"op": "peak_memory", "args": list(args), "kwargs": kwargs})
        return reply["peak_bytes"], reply["result"]


_clock = time.perf_counter


class RemoteObject(RemoteCallable):
    """A handle to an object kept in the worker (a module, an optimizer, ...)."""

    def __init__(self, worker: Worker, target: dict, type_name: str, generation: int):
        super().__init__(worker, target, generation)
        self.type_name = type_name

    def __getattr__(self, name: str) -> RemoteCallable:
        if name.startswith("__"):
            raise AttributeError(name)
        return RemoteCallable(self._worker, dict(self._target, attr=name), self._generation)

    def attr(self, name: str):
        """The value of an attribute (``model.attr("training")``)."""
        return self._worker.request({"op": "getattr", "target": dict(self._target, attr=name)})

    def fetch(self):
        """The object itself, if it is plain data (tensors, numbers, lists)."""
        self._check()
        return self._worker.request({"op": "value", "ref": self._target["ref"]})

    def release(self) -> None:
        if self._generation == self._worker.generation and self._worker.process is not None:
            self._worker.request({"op": "release", "refs": [self._target["ref"]]})

    def __repr__(self) -> str:
        return f"<remote {self.type_name}>"


class RemoteNamespace:
    """The submission (or the reference) as seen from the judge."""

    def __init__(self, worker: Worker):
        self._worker = worker

    def __getattr__(self, name: str) -> RemoteCallable:
        if name.startswith("__"):
            raise AttributeError(name)
        return RemoteCallable(self._worker, {"name": name})

    def attr(self, name: str):
        return self._worker.request({"op": "getattr", "target": {"name": name}})

    def exports(self) -> list[str]:
        self._worker.ensure_ready()
        return list(self._worker.exports)

    def stage(self, value) -> RemoteObject:
        """Keep ``value`` in the worker (inputs for timed calls)."""
        return self._worker.request({"op": "stage", "value": value})

    def probe(self, fn: Callable, *args, helpers: tuple[Callable, ...] = (), **kwargs):
        """Run a grader-written function inside the worker.

        The probe's source (and that of ``helpers``, top-level functions or
        classes it uses) is sent to the worker, so the submission can read it:
        never put secrets (thresholds, expected values) in a probe.  It sees
        ``torch``, ``nn``, ``F``, ``math`` and ``submission`` as globals.
        """
        source = "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in (*helpers, fn))
        return self._worker.request({"op": "probe", "source": source, "name": fn.__name__,
                                     "args": list(args), "kwargs": kwargs})

    def output(self) -> str:
        """What the worker printed so far (capped)."""
        return self._worker.output()
