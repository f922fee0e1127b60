"""The sandboxed worker: the only process that ever imports a submission.

Runs inside the sandbox as ``python -I worker.py --submission PATH ...`` with
this file and ``wire.py`` as its whole harness.  It answers requests from the
judge over two inherited pipes (``--fd-in``, ``--fd-out``); the submission's
own stdout and stderr go elsewhere, so printing cannot corrupt the channel.

Nothing here is secret and nothing here is trusted: the submission runs in
this process and may rewrite any of it.  The judge therefore treats every
reply as untrusted data (decoded by ``wire.unpack``) and measures CPU time on
its own clock.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import sys
import time
import traceback

# Bound before any student code exists in this process.
_clock = time.perf_counter

sys.dont_write_bytecode = True
HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))
if HARNESS_DIR not in sys.path:
    sys.path.insert(0, HARNESS_DIR)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import wire  # noqa: E402


class HarnessError(Exception):
    """A request the worker cannot carry out (a grader bug, not the student's)."""


def configure_torch(threads: int, device: str, memory_fraction: float) -> None:
    """Fix the numerics flags both student and reference run under."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if device.startswith("cuda"):  # GPU-only: never runs in CI
        torch.cuda.set_device(torch.device(device))
        torch.cuda.set_per_process_memory_fraction(memory_fraction)


class GpuTimer:
    """CUDA-event timing with an L2 flush; created before student code loads.  GPU-only."""

    def __init__(self):
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        l2 = getattr(props, "L2_cache_size", 64 << 20) or (64 << 20)
        self.flush_buffer = torch.empty(2 * l2 // 4, dtype=torch.int32, device="cuda")
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        self.elapsed = torch.cuda.Event.elapsed_time
        self.record = torch.cuda.Event.record
        self.sync = torch.cuda.synchronize
        self.reset_peak = torch.cuda.reset_peak_memory_stats
        self.peak = torch.cuda.max_memory_allocated

    def peak_bytes(self, fn):
        """Peak CUDA memory allocated while ``fn`` runs."""
        self.sync()
        self.reset_peak()
        out = fn()
        self.sync()
        return out, int(self.peak())

    def time(self, fn):
        self.sync()
        self.flush_buffer.zero_()
        self.record(self.start)
        out = fn()
        self.record(self.end)
        self.sync()
        return out, self.elapsed(self.start, self.end) / 1000.0


class OpTrace(TorchDispatchMode):
    """Records the ATen operators a call really runs (the behavioural banned-API check)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Otherwise torch wraps __torch_dispatch__ in _disable_dynamo, and the first
        # trace imports torch._dynamo (~800 modules, seconds) in every worker.
        return False

    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


class Worker:
    def __init__(self, args):
        self.args = args
        self.submission_path = os.path.abspath(args.submission)
        self.module = None
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}  # id(obj) -> handle
        self.next_id = 1
        self.max_reply = args.max_reply_mb << 20
        self.gpu_timer = GpuTimer() if args.device.startswith("cuda") else None

    # -- object handles ---------------------------------------------------
    def store(self, obj) -> wire.Ref:
        key = id(obj)
        if key in self.ids:
            handle = self.ids[key]
        else:
            handle = self.next_id
            self.next_id += 1
            self.objects[handle] = obj
            self.ids[key] = handle
        return wire.Ref(handle, wire.describe_type(obj))

    def lookup(self, handle: int):
        if handle not in self.objects:
            raise HarnessError(f"no object #{handle} in this worker")
        return self.objects[handle]

    def resolve(self, value):
        """Replace Ref handles sent by the judge with the objects they name."""
        if isinstance(value, wire.Ref):
            return self.lookup(value.id)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.resolve(v) for v in value)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def target(self, spec: dict):
        if "ref" in spec:
            obj = self.lookup(spec["ref"])
        else:
            if self.module is None:
                raise HarnessError("the submission is not loaded")
            obj = self.module
            for part in spec["name"].split("."):
                try:
                    obj = getattr(obj, part)
                except AttributeError:
                    raise AttributeError(
                        f"the submission does not define {spec['name']!r}") from None
        attr = spec.get("attr")
        if attr is not None:
            obj = getattr(obj, attr)
        return obj

    # -- requests ---------------------------------------------------------
    def handle(self, request: dict):
        op = request.get("op")
        method = getattr(self, f"op_{op}", None)
        if method is None:
            raise HarnessError(f"unknown op {op!r}")
        return method(request)

    def op_ping(self, request):
        return "pong"

    def op_load(self, request):
        name = self.args.module_name
        spec = importlib.util.spec_from_file_location(name, self.submission_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        self.module = module
        return sorted(k for k in vars(module) if not k.startswith("_"))

    def call_with(self, request, fn):
        args = self.resolve(request.get("args", []))
        kwargs = self.resolve(request.get("kwargs", {}))
        return fn(*args, **kwargs)

    def op_call(self, request):
        fn = self.target(request["target"])
        if request.get("trace_ops"):
            with OpTrace() as trace:
                out = self.call_with(request, fn)
            return {"value": out, "ops": sorted(trace.ops)}
        return self.call_with(request, fn)

    def op_call_many(self, request):
        """Several calls of one target in one round trip (numerical gradcheck)."""
        fn = self.target(request["target"])
        return [fn(*self.resolve(args)) for args in request["arg_list"]]

    def op_getattr(self, request):
        return self.target(request["target"])

    def op_value(self, request):
        return self.lookup(request["ref"])

    def op_stage(self, request):
        """Keep a value in the worker and hand back a handle to it."""
        return self.store(request["value"])

    def op_release(self, request):
        for handle in request["refs"]:
            obj = self.objects.pop(handle, None)
            if obj is not None:
                self.ids.pop(id(obj), None)
        gc.collect()
        return None

    def op_reset(self, request):
        self.objects.clear()
        self.ids.clear()
        gc.collect(0)   # young objects only: a full collection with torch loaded costs ~40 ms
        return None

    def op_vjp(self, request):
        fn = self.target(request["target"])
        args = list(self.resolve(request.get("args", [])))
        kwargs = self.resolve(request.get("kwargs", {}))
        wrt = request.get("wrt", [])
        inputs = []
        for i in wrt:
            if not isinstance(args[i], torch.Tensor):
                raise HarnessError(f"argument {i} is not a tensor")
            args[i] = args[i].detach().clone().requires_grad_(True)
            inputs.append(args[i])
        owner = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
        params = []
        if request.get("params") and isinstance(owner, torch.nn.Module):
            params = [(n, p) for n, p in owner.named_parameters() if p.requires_grad]
        trace = OpTrace() if request.get("trace_ops") else None
        if trace is not None:
            trace.__enter__()
        try:
            out = fn(*args, **kwargs)
            outs = [out] if isinstance(out, torch.Tensor) else list(out)
            grad_outputs = request["grad_output"]
            grad_outputs = [grad_outputs] if isinstance(grad_outputs, torch.Tensor) else list(grad_outputs)
            if len(grad_outputs) != len(outs):
                raise HarnessError("grad_output does not match the outputs")
            grad_outputs = [g.to(o.device, o.dtype) for g, o in zip(grad_outputs, outs)]
            if not all(isinstance(o, torch.Tensor) and o.requires_grad for o in outs):
                raise RuntimeError("the output is not connected to the autograd graph "
                                   "(was it detached, or computed under no_grad?)")
            every = inputs + [p for _, p in params]
            grads = torch.autograd.grad(outs, every, grad_outputs, allow_unused=True) if every else []
        finally:
            if trace is not None:
                trace.__exit__(None, None, None)
        n = len(inputs)
        reply = {
            "output": out,
            "input_grads": list(grads[:n]),
            "param_grads": {name: g for (name, _), g in zip(params, grads[n:])},
        }
        if trace is not None:
            reply["ops"] = sorted(trace.ops)
        return reply

    def op_probe(self, request):
        namespace = {"torch": torch, "nn": torch.nn, "F": F, "math": math,
                     "submission": self.module, "__name__": "probe"}
        exec(compile(request["source"], "<grader probe>", "exec"), namespace)
        fn = namespace[request["name"]]
        return self.call_with(request, fn)

    def op_timed(self, request):
        """One timed call of a target on staged inputs; the result stays here."""
        fn = self.target(request["target"])
        args = self.resolve(request.get("args", []))
        kwargs = self.resolve(request.get("kwargs", {}))
        if self.gpu_timer is not None:  # GPU-only
            out, elapsed = self.gpu_timer.time(lambda: fn(*args, **kwargs))
        else:
            start = _clock()
            out = fn(*args, **kwargs)
            elapsed = _clock() - start
        return {"elapsed": elapsed, "digest": digest(out), "result": self.store(out)}

    def op_peak_memory(self, request):
        """A call's peak CUDA memory (None on CPU); the result stays here."""
        fn = self.target(request["target"])
        args = self.resolve(request.get("args", []))
        kwargs = self.resolve(request.get("kwargs", {}))
        if self.gpu_timer is not None:  # GPU-only
            out, peak = self.gpu_timer.peak_bytes(lambda: fn(*args, **kwargs))
        else:
            out, peak = fn(*args, **kwargs), None
        return {"peak_bytes": peak, "digest": digest(out), "result": self.store(out)}

    # -- replies ------------------------------------------------------------
    def error_reply(self, exc: BaseException) -> dict:
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if f.filename == self.submission_path]
        lines = [f'  File "{os.path.basename(f.filename)}", line {f.lineno}, in {f.name}\n'
                 f"    {(f.line or '').strip()}" for f in frames[-6:]]
        message = str(exc) if not isinstance(exc, SystemExit) else f"exit code {exc.code!r}"
        return {"status": "error", "error": {
            "type": type(exc).__name__,
            "harness": isinstance(exc, HarnessError),  # unencodable results are the student's
            "message": message[:4000],
            "traceback": "\n".join(lines)[:4000],
        }}

    def serve(self, fd_in: int, fd_out: int) -> None:
        ready = {"status": "ready", "torch": torch.__version__, "pid": os.getpid(),
                 "cuda": torch.cuda.is_available()}
        wire.write_frame(fd_out, wire.pack(ready))
        while True:
            try:
                request = wire.unpack(wire.read_frame(fd_in, 1 << 34))
            except wire.ChannelClosed:
                return
            try:
                result = self.handle(request)
                payload = wire.pack({"status": "ok", "value": result},
                                    on_unknown=self.store, max_bytes=self.max_reply)
            except BaseException as exc:  # the submission may raise SystemExit & co.
                payload = wire.pack(self.error_reply(exc))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            wire.write_frame(fd_out, payload)


def digest(value) -> list[dict]:
    """A cheap fingerprint of every tensor in a result (forces lazy results)."""
    leaves = []

    def walk(v):
        if isinstance(v, torch.Tensor):
            wire.check_plain_tensor(v)
            d = v.detach()
            if not (d.is_floating_point() or d.dtype == torch.bool):
                d64 = d.to(torch.float64)
                total, absolute, nonfinite = d64.sum(), d64.abs().sum(), 0
            else:
                total = d.sum(dtype=torch.float64)
                absolute = d.abs().sum(dtype=torch.float64) if d.dtype != torch.bool else total
                nonfinite = 0
                if not (torch.isfinite(total) and torch.isfinite(absolute)):
                    finite = torch.isfinite(d)
                    nonfinite = int((~finite).sum())
                    clean = torch.where(finite, d, 0).to(torch.float64)
                    total, absolute = clean.sum(), clean.abs().sum()
            leaves.append({"shape": list(d.shape), "dtype": str(d.dtype), "device": str(d.device),
                           "sum": float(total), "abs": float(absolute), "nonfinite": nonfinite})
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        else:
            leaves.append({"type": wire.describe_type(v)})

    walk(value)
    return leaves


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submission", required=True)
    parser.add_argument("--module-name", required=True)
    parser.add_argument("--fd-in", type=int, required=True)
    parser.add_argument("--fd-out", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-fraction", type=float, default=0.9)
    parser.add_argument("--max-reply-mb", type=int, default=256)
    parser.add_argument("--seccomp", action="store_true",
                        help="load the process filter here (no outer sandbox applied it)")
    args = parser.parse_args(argv)
    if args.seccomp:
        import seccomp
        seccomp.install()
    configure_torch(args.threads, args.device, args.memory_fraction)
    fd_in, fd_out = args.fd_in, args.fd_out
    # Keep the channel away from fds 0-2 so that closing stdio cannot close it.
    os.set_inheritable(fd_in, False)
    os.set_inheritable(fd_out, False)
    Worker(args).serve(fd_in, fd_out)


if __name__ == "__main__":
    main()
