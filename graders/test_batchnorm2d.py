"""Grader for batchnorm2d (notes 003, exercise 9.3; notes 004 part 1).

The ground truth is the reference MyBatchNorm2d run in float64 in the
reference worker (checked against nn.BatchNorm2d when it was written), and,
for the state_dict tests, torch.nn.BatchNorm2d itself, run here in the judge
on plain tensors (the submission's state_dict is only ever data here).

Errors are judged per channel, relative to a scale (``ULPS`` units of the
dtype's eps times the scale):
  * outputs: the largest magnitude the normalization passes through in that
    channel, (|x| + |mean|) / sqrt(var + eps) * |weight| + |bias|;
  * input gradients: the largest |gradient| of the channel;
  * weight/bias gradients: the size of the sum they are, sum |g * x_hat| / sum |g|;
  * running statistics: |new| + the largest value they have held (a lerp
    (1 - f) * old + f * new is exact only to the size of its terms).
Every input has a small-variance channel (std ~0.005, variance comparable to
eps), so eps matters, and per-channel scales keep it from being judged by the
other channels' sizes.  Means stay within 3 stds, where even the one-pass
variance E[x^2] - E[x]^2 is accurate.  Measured errors of correct solutions in
five styles (reference; keepdim + x.var; var_mean + custom autograd.Function;
einsum sums with folded scale/shift; one-pass variance) stay below ~15 units;
the tolerance is 64.  The classic mistakes are off by 1e-3 to 1e-1.

Eval-mode tests copy the student's running statistics into the reference
first (``Pair.eval``): they judge the eval computation, while the running
statistics are judged by the tests about them (test_running_stats,
test_momentum_none, test_float64, test_state_dict_*).

Judge-side float64 re-computations of the classic mistakes (unbiased
normalization, wrong dims, biased running_var, momentum on the old value,
...) only choose the words of a failure message.
"""
import math

import torch

from graders import checks
from graders.checks import hint, points

F32, F64 = torch.float32, torch.float64
ULPS = 64            # tolerance, in units of the dtype's eps relative to the scale
DIAG_RTOL = 1e-4     # "matches this classic mistake" when within this (relative to scale)
DIMS = (0, 2, 3)


# ---- probes (run in a worker; they see torch, nn, F, math, submission) ---------------

def set_affine(model, weight, bias):
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.copy_(bias)
    return None


def set_running(model, mean, var):
    with torch.no_grad():
        model.running_mean.copy_(mean)
        model.running_var.copy_(var)
    return None


def running_stats(model):
    stats = {"running_mean": model.running_mean, "running_var": model.running_var,
             "num_batches_tracked": model.num_batches_tracked}
    stats["in_graph"] = [k for k, v in stats.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    return stats


def describe(model):
    names = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    return {
        "parameters": {n: p.detach().clone() for n, p in model.named_parameters()},
        "trainable": [n for n, p in model.named_parameters() if p.requires_grad],
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "none": [k for k in names if hasattr(model, k) and getattr(model, k) is None],
        "state_dict": sorted(str(k) for k in model.state_dict()),
    }


# ---- inputs -------------------------------------------------------------------------

def channel_profile(rng, c):
    """Per-channel stds in [0.3, 3] (log-uniform) and means within 3 stds of zero; one
    channel with std ~0.005 (variance comparable to eps, so that eps matters).
    Means stay within a few stds so that a correct float32 solution using the one-pass
    formula E[x^2] - E[x]^2 is still accurate to the tolerance."""
    scale = torch.exp(torch.rand(c, generator=rng, dtype=F64) * math.log(10) + math.log(0.3))
    k = int(torch.randint(c, (1,), generator=rng))
    scale[k] = 0.004 + 0.002 * float(torch.rand(1, generator=rng, dtype=F64))
    loc = scale * (torch.rand(c, generator=rng, dtype=F64) * 6 - 3)
    return loc, scale


def make_batch(rng, shape, profile):
    """A float32 batch (exactly representable, so the float64 truth sees the same values)."""
    loc, scale = profile
    x = torch.randn(*shape, generator=rng, dtype=F64) * scale.view(1, -1, 1, 1) + loc.view(1, -1, 1, 1)
    return x.to(F32)


def affine_values(rng, c):
    """|weight| in [0.5, 1.5] with random signs, bias N(0, 1): float32-exact."""
    sign = torch.randint(0, 2, (c,), generator=rng) * 2 - 1
    w = (0.5 + torch.rand(c, generator=rng, dtype=F64)) * sign
    b = torch.randn(c, generator=rng, dtype=F64)
    return w.to(F32), b.to(F32)


# ---- comparisons ----------------------------------------------------------------------

def per_channel_scale(want):
    """The largest |value| of each channel, broadcastable to ``want``."""
    if want.dim() == 4:
        return want.abs().amax(dim=DIMS, keepdim=True)
    return want.abs()


def assert_scaled_close(got, want, scale, *, what, dtype, device=None, ulps=ULPS):
    """|got - want| <= ulps * eps(dtype) * scale, elementwise (scale: per channel, say)."""
    checks.expect_tensor(got, what=what, shape=tuple(want.shape), dtype=dtype, device=device)
    tol = ulps * torch.finfo(dtype).eps * torch.as_tensor(scale, dtype=F64).expand(want.shape)
    checks.assert_close(got, want, what=what, dtype=dtype, rtol=0.0, atol=tol, check_device=False)


def matches(got, candidate):
    """Loose closeness, to recognise a classic mistake (not a verdict)."""
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(candidate.shape):
        return False
    a, e = got.detach().to("cpu", F64), candidate.to(F64)
    scale = per_channel_scale(e).clamp_min(1e-12) if e.dim() == 4 else e.abs().max().clamp_min(1e-12)
    return bool(torch.isfinite(a).all()) and bool(((a - e).abs() <= DIAG_RTOL * scale).all())


def bn64(x, w=None, b=None, eps=1e-5, dims=DIMS, correction=0, eps_outside=False,
         mean=None, var=None):
    """Judge-side float64 batch norm with knobs for the classic mistakes."""
    x = x.to(F64)
    if mean is None:
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, keepdim=True, correction=correction)
    else:
        mean, var = mean.to(F64).view(1, -1, 1, 1), var.to(F64).view(1, -1, 1, 1)
    den = var.sqrt() + eps if eps_outside else (var + eps).sqrt()
    y = (x - mean) / den
    if w is not None:
        y = y * w.to(F64).view(1, -1, 1, 1) + b.to(F64).view(1, -1, 1, 1)
    return y


def simulate_running(batches, momentum, variant="correct"):
    """Running statistics after ``batches`` under PyTorch's rules or a classic mistake."""
    c = batches[0].shape[1]
    rm, rv = torch.zeros(c, dtype=F64), torch.ones(c, dtype=F64)
    for k, x in enumerate(batches, start=1):
        x = x.to(F64)
        mean = x.mean(dim=DIMS)
        var = x.var(dim=DIMS, correction=0 if variant == "biased" else 1)
        f = 1.0 / k if momentum is None else momentum
        if variant == "old":
            f = 1.0 - f
        elif variant == "fixed":
            f = 0.1
        elif variant == "frozen":
            f = 0.0
        rm = (1 - f) * rm + f * mean
        rv = (1 - f) * rv + f * var
    return rm, rv


RUNNING_MISTAKES = [
    ("biased", "running_var uses the biased variance; PyTorch tracks the unbiased one "
               "(multiply the batch variance by n / (n - 1), n = N * H * W)"),
    ("old", "momentum weights the old running value; in PyTorch's convention momentum weights "
            "the new batch: running = (1 - momentum) * running + momentum * batch"),
    ("fixed", "the update ignores the momentum argument (it always uses 0.1)"),
    ("frozen", "the running statistics are not updated in training mode"),
]


def diagnose_running(got_mean, got_var, batches, momentum):
    for variant, message in RUNNING_MISTAKES:
        if variant == "fixed" and momentum in (0.1, None):
            continue
        rm, rv = simulate_running(batches, momentum, variant)
        mean_ok = variant in ("biased",) or matches(got_mean, rm)
        if mean_ok and matches(got_var, rv):
            return message
    if momentum is None:
        rm, rv = simulate_running(batches, 0.1)
        if matches(got_mean, rm) and matches(got_var, rv):
            return ("momentum=None is treated as momentum=0.1; it must give the cumulative average "
                    "(update factor 1 / num_batches_tracked)")
    return None


def diagnose_train_output(got, x, w, b, eps):
    if matches(got, bn64(x, w, b, eps)):
        return None   # the output is right (the failure is elsewhere)
    candidates = [
        (dict(correction=1), "normalizes with the unbiased variance (n - 1); batch norm divides by "
                             "sqrt of the biased variance (1/n, n = N * H * W) + eps"),
        (dict(eps_outside=True), "adds eps outside the square root; use sqrt(var + eps)"),
    ]
    for dims in [(0,), (0, 2), (0, 3), (2, 3), (1, 2, 3), (0, 1, 2, 3)]:
        candidates.append((dict(dims=dims), f"computes the statistics over dims {dims}; batch norm uses "
                                            "one mean and variance per channel, over dims (0, 2, 3)"))
    c = x.shape[1]
    candidates.append((dict(mean=torch.zeros(c), var=torch.ones(c)),
                       "uses the running statistics in training mode; training mode normalizes "
                       "with the statistics of the current batch"))
    for kwargs, message in candidates:
        if matches(got, bn64(x, w, b, eps, **kwargs)):
            return message
    if w is not None and matches(got, bn64(x, eps=eps)):
        return "weight and bias are not applied (y = x_hat * weight + bias)"
    return None


# ---- a student module and the reference one, stepped together -------------------------

def running_scales(want, seen):
    """Error scales of running statistics.  An update (1 - f) * old + f * new is exact only to
    the size of its terms, and errors carry over to later steps, so running_var is judged
    elementwise relative to |new| + the largest |running_var| it has held (``seen``); the
    means, which can sit near zero, relative to the largest of all channels."""
    mean = (want["running_mean"].to("cpu", F64).abs() + seen["running_mean"]).max()
    var = want["running_var"].to("cpu", F64).abs() + seen["running_var"]
    return {"running_mean": mean, "running_var": var}


def initial_seen(c):
    """The magnitudes the running statistics have held: initially zeros and ones."""
    return {"running_mean": torch.zeros(c, dtype=F64), "running_var": torch.ones(c, dtype=F64)}


def update_seen(seen, want):
    return {k: torch.maximum(seen[k], want[k].to("cpu", F64).abs()) for k in seen}


class Pair:
    """MyBatchNorm2d in the student's worker (``dtype``) and the reference's (float64).

    Every training batch goes to both.  On entering eval mode the student's running
    statistics are copied into the reference, so that eval-mode tests judge the eval-mode
    computation itself.  The running statistics are judged where a test says so
    (``check_stats``: test_running_stats, test_momentum_none, test_float64, ...), so one
    mistake in them does not cost every eval-mode test; and a float32 running variance is
    only exact to the rounding of the values it was averaged from, which can be large
    relative to a small-variance channel's own variance.
    """

    def __init__(self, student, reference, rng, c, *, dtype=F32, device="cpu", **kwargs):
        self.s = student.MyBatchNorm2d(c, **kwargs)   # first: a stub fails here
        self.r = reference.MyBatchNorm2d(c, **kwargs)
        self.student, self.reference = student, reference
        self.r.double()
        self.c, self.dtype, self.device = c, dtype, device
        self.kwargs = kwargs
        self.eps = kwargs.get("eps", 1e-5)
        self.momentum = kwargs.get("momentum", 0.1)
        self.tracking = kwargs.get("track_running_stats", True)
        self.training = True
        self.w = self.b = None
        if kwargs.get("affine", True):
            self.w, self.b = affine_values(rng, c)
            student.probe(set_affine, self.s, self.w.to(dtype), self.b.to(dtype))
            reference.probe(set_affine, self.r, self.w.to(F64), self.b.to(F64))
        if dtype == F64:
            self.s.double()
        if device != "cpu":
            self.s.to(device)
        self.train_batches = []   # the batches seen in training mode (for diagnosis)
        self.seen = initial_seen(c)

    def label(self):
        args = [str(self.c)] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"MyBatchNorm2d({', '.join(args)})" + (".double()" if self.dtype == F64 else "")

    def train(self):
        self.s.train()
        self.r.train()
        self.training = True

    def eval(self):
        """Give the student's running statistics to the reference, and switch to eval."""
        if self.tracking:
            got = self.student.probe(running_stats, self.s)
            for key in ("running_mean", "running_var"):
                # (their shape and dtype are judged by check_stats and the state_dict tests)
                checks.expect_tensor(got[key], what=f"{key} of {self.label()}")
                if got[key].numel() != self.c:
                    checks.fail(f"{key} of {self.label()} has shape {tuple(got[key].shape)}, "
                                f"expected ({self.c},)")
            self.eval_stats = (got["running_mean"].to("cpu", F64).view(-1),
                               got["running_var"].to("cpu", F64).view(-1))
            self.reference.probe(set_running, self.r, *self.eval_stats)
        self.s.eval()
        self.r.eval()
        self.training = False

    def output_scale(self, x, want):
        """The error scale of an output on ``x`` (see ``output_scale``)."""
        stats = (None, None) if self.training or not self.tracking else self.eval_stats
        return output_scale(x, want, *stats, self.w, self.b, self.eps)

    def _after(self, x):
        if self.training:
            self.train_batches.append(x)
            if self.tracking:
                self.seen = update_seen(self.seen, self.reference.probe(running_stats, self.r))

    def forward(self, x):
        """One plain forward call on both; returns (student output, float64 truth)."""
        got = self.s(x.to(self.device, self.dtype))
        want = self.r(x.to(F64))
        self._after(x)
        return got, want

    def step(self, x, g):
        """Forward + backward with output gradient ``g`` on both (GradResults)."""
        got = self.s.with_grad(g.to(self.device, self.dtype), wrt=[0], params=True)(
            x.to(self.device, self.dtype))
        want = self.r.with_grad(g.to(F64), wrt=[0], params=True)(x.to(F64))
        self._after(x)
        return got, want

    def check_stats(self):
        """The student's running statistics, checked against the reference's."""
        got = self.student.probe(running_stats, self.s)
        want = self.reference.probe(running_stats, self.r)
        check_running(self, got, want)
        return got


def check_running(pair, got, want):
    """Compare running statistics (dicts from the ``running_stats`` probe)."""
    steps, what = len(pair.train_batches), pair.label()
    for key in ("running_mean", "running_var"):
        checks.expect_tensor(got[key], what=f"{key} of {what}", shape=(pair.c,), dtype=pair.dtype)
    if got["in_graph"]:
        checks.fail(f"{', '.join(got['in_graph'])} of {what} requires grad after training batches: "
                    "the running statistics became part of an autograd graph (which then chains all "
                    "past batches); update them under torch.no_grad() or from detached statistics")
    nbt = got["num_batches_tracked"]
    checks.expect_tensor(nbt, what=f"num_batches_tracked of {what}", shape=(), dtype=torch.int64)
    if int(nbt) != steps:
        checks.fail(f"num_batches_tracked of {what} is {int(nbt)} after {steps} training "
                    f"batch{'es' if steps != 1 else ''}; "
                    "it must count the batches seen in training mode")
    scales = running_scales(want, pair.seen)
    try:
        for key in ("running_mean", "running_var"):
            assert_scaled_close(got[key], want[key], scales[key], what=f"{key} of {what} after "
                                f"{steps} training batch{'es' if steps > 1 else ''}", dtype=pair.dtype)
    except checks.Failure as failure:
        reason = diagnose_running(got["running_mean"], got["running_var"], pair.train_batches,
                                  pair.momentum)
        if reason:
            checks.fail(f"{failure}: {reason}")
        raise


def output_scale(x, want, mean=None, var=None, w=None, b=None, eps=1e-5):
    """Error scale of a batch-norm output, per channel: the largest of |y| and of the
    magnitudes an evaluation can pass through, (|x| + |mean|) / sqrt(var + eps) * |w| + |b|
    (so that a channel whose outputs happen to be small, e.g. a (1, C, 1, 1) batch, is not
    judged relative to a near-zero value).  mean/var: the statistics normalized with
    (batch statistics when None)."""
    x = x.detach().to("cpu", F64)
    if mean is None:
        mean, var = x.mean(dim=DIMS), x.var(dim=DIMS, correction=0)
    mean, var = mean.detach().to("cpu", F64), var.detach().to("cpu", F64)
    w = None if w is None else w.detach().to("cpu", F64)
    b = None if b is None else b.detach().to("cpu", F64)
    view = (1, -1, 1, 1)
    mag = (x.abs() + mean.to(F64).abs().view(view)) / (var.to(F64).view(view) + eps).sqrt()
    if w is not None:
        mag = mag * w.to(F64).abs().view(view) + b.to(F64).abs().view(view)
    return torch.maximum(per_channel_scale(mag), per_channel_scale(want.to("cpu", F64)))


def check_output(got, want, scale, *, what, dtype, device=None):
    checks.expect_tensor(got, what=what, shape=tuple(want.shape), dtype=dtype, device=device)
    assert_scaled_close(got, want, scale, what=what, dtype=dtype)


def check_step(pair, got, want, x, g, *, what, grads=True):
    """Compare output and gradients of one ``Pair.step``."""
    check_output(got.output, want.output, pair.output_scale(x, want.output),
                 what=f"the output of {what}", dtype=pair.dtype, device=pair.device)
    if not grads:
        return
    gx, wx = got.input_grads[0], want.input_grads[0]
    label = f"the gradient of {what} with respect to the input"
    if gx is None:
        checks.fail(f"{label} is missing: the output does not depend on the input through autograd")
    assert_scaled_close(gx, wx, per_channel_scale(wx), what=label, dtype=pair.dtype)
    if pair.w is None:
        return
    g64 = g.to(F64)
    xhat = (want.output.to(F64) - pair.b.to(F64).view(1, -1, 1, 1)) / pair.w.to(F64).view(1, -1, 1, 1)
    scales = {"weight": (g64 * xhat).abs().sum(dim=DIMS), "bias": g64.abs().sum(dim=DIMS)}
    for name in ("weight", "bias"):
        if name not in got.param_grads:
            checks.fail(f"{what}: there is no parameter named {name!r} that requires grad "
                        "(the parameters must be nn.Parameters called weight and bias)")
        pg = got.param_grads[name]
        label = f"the gradient of {what} with respect to {name}"
        if pg is None:
            checks.fail(f"{label} is missing: {name} is not used, or is detached from the output")
        assert_scaled_close(pg, want.param_grads[name], scales[name], what=label, dtype=pair.dtype)


def train_steps(pair, rng, profile, shapes, *, compare=True, grads=True):
    """Training steps with new batches; compare each step's output (and grads) if asked."""
    for shape in shapes:
        x = make_batch(rng, shape, profile)
        g = checks.randn(rng, *shape)
        got, want = pair.step(x, g)
        if compare:
            label = f"{pair.label()} in training mode, batch {len(pair.train_batches)} {shape}"
            try:
                check_step(pair, got, want, x, g, what=label, grads=grads)
            except checks.Failure as failure:
                reason = None
                if isinstance(got.output, torch.Tensor):
                    reason = diagnose_train_output(got.output, x, pair.w, pair.b, pair.eps)
                if reason:
                    checks.fail(f"{failure}: {reason}")
                raise


def label_for(c, kwargs):
    return f"MyBatchNorm2d({', '.join([str(c)] + [f'{k}={v}' for k, v in kwargs.items()])})"


# ---- tests --------------------------------------------------------------------------------

@points(2)
@hint("weight/bias are nn.Parameters (not gamma/beta); running_mean, running_var and "
      "num_batches_tracked (torch.tensor(0, dtype=torch.long)) are registered with "
      "self.register_buffer(...); with affine=False / track_running_stats=False set them to None")
def test_parameters_and_buffers(student, exercise):
    """Parameters weight/bias and buffers running_mean/running_var/num_batches_tracked, as nn.BatchNorm2d"""
    c = exercise.settings["channels"]
    for kwargs in ({}, {"affine": False}, {"track_running_stats": False},
                   {"affine": False, "track_running_stats": False}):
        model = student.MyBatchNorm2d(c, **kwargs)
        label = label_for(c, kwargs)
        got = student.probe(describe, model)
        builtin = torch.nn.BatchNorm2d(c, **kwargs)
        want_params = dict(builtin.named_parameters())
        want_buffers = dict(builtin.named_buffers())
        if sorted(got["parameters"]) != sorted(want_params):
            checks.fail(f"{label} has parameters {sorted(got['parameters'])}; nn.BatchNorm2d has "
                        f"{sorted(want_params)} (the names matter: state_dict keys come from them)")
        if sorted(got["trainable"]) != sorted(want_params):
            checks.fail(f"{label}: weight and bias must require grad")
        if sorted(got["buffers"]) != sorted(want_buffers):
            checks.fail(f"{label} has buffers {sorted(got['buffers'])}; nn.BatchNorm2d has "
                        f"{sorted(want_buffers)} (register them with self.register_buffer)")
        for name, value in list(want_params.items()) + list(want_buffers.items()):
            have = got["parameters"].get(name, got["buffers"].get(name))
            checks.expect_tensor(have, what=f"{name} of {label}", shape=tuple(value.shape),
                                 dtype=value.dtype)
            if not torch.equal(have.cpu(), value.detach()):
                checks.fail(f"{name} of {label} does not start at the right value (weight: ones, "
                            "bias: zeros, running_mean: zeros, running_var: ones, "
                            "num_batches_tracked: 0)")
        want_none = sorted(k for k in ("weight", "bias", "running_mean", "running_var",
                                       "num_batches_tracked") if getattr(builtin, k) is None)
        if sorted(got["none"]) != want_none:
            checks.fail(f"{label}: the attributes that are None should be {want_none}, "
                        f"got {sorted(got['none'])}")
        if got["state_dict"] != sorted(builtin.state_dict()):
            checks.fail(f"the state_dict keys of {label} are {got['state_dict']}; nn.BatchNorm2d's "
                        f"are {sorted(builtin.state_dict())}")


@points(3)
def test_train_forward(student, reference, rng, device, exercise):
    """Training mode normalizes with per-channel batch statistics (biased variance)"""
    c = exercise.settings["channels"]
    profile = channel_profile(rng, c)
    for kwargs, shapes in (({}, [(4, c, 3, 3), (6, c, 5, 4), (1, c, 4, 7)]),
                           ({"eps": 1e-3}, [(5, c, 3, 4)])):   # the small-variance channel feels eps
        pair = Pair(student, reference, rng, c, device=device, **kwargs)
        for shape in shapes:
            x = make_batch(rng, shape, profile)
            got, want = pair.forward(x)
            try:
                check_output(got, want, pair.output_scale(x, want),
                             what=f"the output of {pair.label()} in training mode on a "
                             f"batch {shape}", dtype=F32, device=device)
            except checks.Failure as failure:
                reason = None
                if isinstance(got, torch.Tensor):
                    reason = diagnose_train_output(got, x, pair.w, pair.b, pair.eps)
                    if reason is None and pair.eps != 1e-5 and matches(got, bn64(x, pair.w, pair.b)):
                        reason = "the eps argument is ignored"
                checks.fail(f"{failure}: {reason}" if reason else str(failure))


@points(3)
@hint("running = (1 - momentum) * running + momentum * batch_stat, with the unbiased "
      "variance (x.var(dim=(0, 2, 3), unbiased=True)) for running_var; update under "
      "torch.no_grad() and add 1 to num_batches_tracked")
def test_running_stats(student, reference, rng, device, exercise):
    """running_mean/running_var (unbiased) and num_batches_tracked after several batches"""
    c = exercise.settings["channels"]
    profile = channel_profile(rng, c)
    for kwargs in ({}, {"momentum": 0.25}):
        pair = Pair(student, reference, rng, c, device=device, **kwargs)
        for shape in [(4, c, 3, 3), (2, c, 4, 5), (3, c, 2, 6), (5, c, 3, 2)]:
            train_steps(pair, rng, profile, [shape], compare=False)
            pair.check_stats()


@points(3)
@hint("in eval mode normalize with running_mean and running_var (no batch statistics, "
      "no update of any buffer)")
def test_eval_mode(student, reference, rng, device, exercise):
    """Eval mode normalizes with the running statistics and changes no buffer"""
    c = exercise.settings["channels"]
    pair = Pair(student, reference, rng, c, device=device)
    profile = channel_profile(rng, c)
    train_steps(pair, rng, profile, [(4, c, 3, 3), (3, c, 4, 4), (6, c, 2, 3)], compare=False)
    pair.eval()
    before = student.probe(running_stats, pair.s)
    x = make_batch(rng, (5, c, 3, 4), profile)
    got, want = pair.forward(x)
    try:
        check_output(got, want, pair.output_scale(x, want),
                     what=f"the output of {pair.label()} in eval mode after 3 training "
                     "batches", dtype=F32, device=device)
    except checks.Failure as failure:
        reason = None
        if isinstance(got, torch.Tensor) and matches(got, bn64(x, pair.w, pair.b, pair.eps)):
            reason = ("eval mode still normalizes with the batch statistics; it must use "
                      "running_mean and running_var")
        checks.fail(f"{failure}: {reason}" if reason else str(failure))
    after = student.probe(running_stats, pair.s)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        if not torch.equal(after[key].cpu(), before[key].cpu()):
            checks.fail(f"{key} changed during an eval-mode forward call; eval mode must not update "
                        "any buffer")
    # one sample alone gives the same output as inside the batch
    single = pair.s(x[2:3].to(device))
    checks.expect_tensor(single, what="the eval-mode output for a single sample", shape=(1, c, 3, 4))
    if not torch.allclose(single.cpu().double(), got[2:3].cpu().double(), rtol=1e-5, atol=1e-5):
        checks.fail("in eval mode the output for a sample depends on the rest of the batch")
    # back to training mode: batch statistics again
    pair.train()
    train_steps(pair, rng, profile, [(4, c, 2, 2)], grads=False)


@points(3)
@hint("let autograd differentiate through the batch mean and variance (do not detach them "
      "or compute them under no_grad); only the running-statistics update is gradient-free")
def test_gradients_train(student, reference, rng, device, exercise):
    """Training mode: gradients w.r.t. input, weight and bias over several steps"""
    c = exercise.settings["channels"]
    pair = Pair(student, reference, rng, c, device=device)
    profile = channel_profile(rng, c)
    for shape in [(4, c, 3, 3), (2, c, 5, 3), (6, c, 2, 2), (1, c, 3, 5)]:
        x = make_batch(rng, shape, profile)
        g = checks.randn(rng, *shape)
        got, want = pair.step(x, g)
        label = f"{pair.label()} in training mode, batch {len(pair.train_batches)} {shape}"
        try:
            check_step(pair, got, want, x, g, what=label)
        except checks.Failure as failure:
            reason = None
            gx = got.input_grads[0] if got.input_grads else None
            if isinstance(got.output, torch.Tensor):
                reason = diagnose_train_output(got.output, x, pair.w, pair.b, pair.eps)
            if reason is None and isinstance(gx, torch.Tensor) and tuple(gx.shape) == tuple(x.shape):
                var = x.to(F64).var(dim=DIMS, correction=0)
                const = g.to(F64) * (pair.w.to(F64) / (var + pair.eps).sqrt()).view(1, -1, 1, 1)
                if matches(gx, const):
                    reason = ("the input gradient treats the batch mean and variance as constants; "
                              "they depend on the input too")
            checks.fail(f"{failure}: {reason}" if reason else str(failure))


@points(2)
@hint("in eval mode the output is (x - running_mean) / sqrt(running_var + eps) * weight + bias, "
      "with the running statistics as constants: gradients flow to x, weight and bias")
def test_gradients_eval(student, reference, rng, device, exercise):
    """Eval mode: gradients w.r.t. input, weight and bias with the running statistics"""
    c = exercise.settings["channels"]
    pair = Pair(student, reference, rng, c, device=device)
    profile = channel_profile(rng, c)
    train_steps(pair, rng, profile, [(4, c, 3, 3), (3, c, 2, 5)], compare=False)
    pair.eval()
    for shape in [(3, c, 4, 2), (1, c, 1, 1)]:
        x = make_batch(rng, shape, profile)
        g = checks.randn(rng, *shape)
        got, want = pair.step(x, g)
        check_step(pair, got, want, x, g, what=f"{pair.label()} in eval mode on a batch {shape}")


@points(2)
def test_float64(student, reference, rng, device, exercise):
    """float64: outputs, gradients and running statistics to float64 precision"""
    c = exercise.settings["channels"]
    pair = Pair(student, reference, rng, c, dtype=F64, device=device)
    profile = channel_profile(rng, c)
    for shape in [(4, c, 3, 3), (2, c, 3, 5), (3, c, 4, 2)]:
        train_steps(pair, rng, profile, [shape])
        pair.check_stats()
    pair.eval()
    x = make_batch(rng, (3, c, 3, 3), profile)
    g = checks.randn(rng, 3, c, 3, 3)
    got, want = pair.step(x, g)
    check_step(pair, got, want, x, g, what=f"{pair.label()} in eval mode")


@points(2)
@hint("momentum=None: f = 1 / num_batches_tracked (after incrementing it), so that batch k "
      "gets weight 1/k and the running statistics are the plain average of all batches")
def test_momentum_none(student, reference, rng, device, exercise):
    """momentum=None gives the cumulative average of the batch statistics"""
    c = exercise.settings["channels"]
    pair = Pair(student, reference, rng, c, device=device, momentum=None)
    profile = channel_profile(rng, c)
    for k, shape in enumerate([(3, c, 3, 3), (2, c, 4, 4), (4, c, 2, 3), (2, c, 3, 2)], start=1):
        train_steps(pair, rng, profile, [shape], compare=k == 1, grads=False)
        try:
            pair.check_stats()
        except checks.Failure as failure:
            text = str(failure)
            if "cumulative" not in text:
                text += (" (with momentum=None the running statistics must be the cumulative "
                         "average of the batch statistics)")
            checks.fail(text)
    pair.eval()
    x = make_batch(rng, (3, c, 3, 3), profile)
    got, want = pair.forward(x)
    check_output(got, want, pair.output_scale(x, want), what=f"the output of {pair.label()} in eval mode",
                 dtype=F32, device=device)


@points(2)
def test_affine_false(student, reference, rng, device, exercise):
    """affine=False: no parameters; training and eval outputs and input gradients"""
    c = exercise.settings["channels"]
    pair = Pair(student, reference, rng, c, device=device, affine=False)
    for name in ("weight", "bias"):
        if pair.s.attr(name) is not None:
            checks.fail(f"{pair.label()}.{name} should be None")
    profile = channel_profile(rng, c)
    train_steps(pair, rng, profile, [(4, c, 3, 3), (3, c, 2, 4), (2, c, 3, 3)])
    pair.eval()
    x = make_batch(rng, (3, c, 3, 2), profile)
    g = checks.randn(rng, 3, c, 3, 2)
    got, want = pair.step(x, g)
    if got.param_grads:
        checks.fail(f"{pair.label()} has parameters {sorted(got.param_grads)}; it should have none")
    check_step(pair, got, want, x, g, what=f"{pair.label()} in eval mode")


@points(2)
@hint("track_running_stats=False: no running buffers (set them to None) and batch "
      "statistics in eval mode as well")
def test_no_running_stats(student, reference, rng, device, exercise):
    """track_running_stats=False: batch statistics in both modes, no running buffers"""
    c = exercise.settings["channels"]
    pair = Pair(student, reference, rng, c, device=device, track_running_stats=False)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        if pair.s.attr(name) is not None:
            checks.fail(f"{pair.label()}.{name} should be None")
    profile = channel_profile(rng, c)
    train_steps(pair, rng, profile, [(4, c, 3, 3), (2, c, 3, 5)])
    pair.eval()
    for shape in [(3, c, 3, 3), (1, c, 2, 3)]:
        x = make_batch(rng, shape, profile)
        g = checks.randn(rng, *shape)
        got, want = pair.step(x, g)
        label = f"{pair.label()} in eval mode on a batch {shape}"
        try:
            check_step(pair, got, want, x, g, what=label)
        except checks.Failure as failure:
            reason = None
            if isinstance(got.output, torch.Tensor) and matches(
                    got.output, bn64(x, pair.w, pair.b, pair.eps, mean=torch.zeros(c), var=torch.ones(c))):
                reason = ("without running statistics, eval mode must normalize with the batch "
                          "statistics")
            checks.fail(f"{failure}: {reason}" if reason else str(failure))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        if pair.s.attr(name) is not None:
            checks.fail(f"{pair.label()}.{name} should stay None")


def builtin_load(sd, label, **kwargs):
    """Load a submission's state_dict into a fresh nn.BatchNorm2d here, strictly."""
    if not isinstance(sd, dict):
        checks.fail(f"{label}.state_dict() should return a dict, got {type(sd).__name__}")
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            checks.fail(f"{label}.state_dict()[{key!r}] should be a tensor")
    builtin = torch.nn.BatchNorm2d(**kwargs)
    want_keys = set(builtin.state_dict())
    missing, unexpected = sorted(want_keys - set(sd)), sorted(set(sd) - want_keys)
    if missing or unexpected:
        checks.fail(f"the state_dict of {label} does not load into nn.BatchNorm2d: missing keys "
                    f"{missing}, unexpected keys {unexpected}")
    for key, value in builtin.state_dict().items():
        checks.expect_tensor(sd[key], what=f"state_dict()[{key!r}] of {label}", shape=tuple(value.shape))
    nbt = sd.get("num_batches_tracked")
    if nbt is not None and nbt.dtype != torch.int64:
        checks.fail(f"num_batches_tracked of {label} has dtype {nbt.dtype}; nn.BatchNorm2d's is torch.int64")
    try:
        builtin.load_state_dict({k: v.cpu() for k, v in sd.items()}, strict=True)
    except RuntimeError as e:
        checks.fail(f"the state_dict of {label} does not load into nn.BatchNorm2d: {str(e)[:300]}")
    return builtin


@points(2)
@hint("the keys must be weight, bias, running_mean, running_var and num_batches_tracked, "
      "with nn.BatchNorm2d's shapes and dtypes")
def test_state_dict_into_builtin(student, rng, device, exercise):
    """Your state_dict loads into nn.BatchNorm2d (strict) and gives the same eval outputs"""
    c = exercise.settings["channels"]
    profile = channel_profile(rng, c)
    for kwargs in ({}, {"affine": False}, {"track_running_stats": False}):
        model = student.MyBatchNorm2d(c, **kwargs)
        label = label_for(c, kwargs)
        if kwargs.get("affine", True):
            w, b = affine_values(rng, c)
            student.probe(set_affine, model, w, b)
        if device != "cpu":
            model.to(device)
        model.train()
        for shape in [(4, c, 3, 3), (2, c, 4, 3), (3, c, 3, 2)]:
            model(make_batch(rng, shape, profile).to(device))
        builtin = builtin_load(model.state_dict(), label, num_features=c, **kwargs)
        if kwargs.get("track_running_stats", True) and int(builtin.num_batches_tracked) != 3:
            checks.fail(f"num_batches_tracked in the state_dict of {label} is "
                        f"{int(builtin.num_batches_tracked)} after 3 training batches")
        model.eval()
        builtin.double().eval()
        x = make_batch(rng, (3, c, 3, 4), profile)
        got = model(x.to(device))
        with torch.no_grad():
            want = builtin(x.to(F64))
        stats = (builtin.running_mean, builtin.running_var) if builtin.track_running_stats else (None, None)
        scale = output_scale(x, want, *stats, builtin.weight, builtin.bias)
        check_output(got, want, scale, what=f"the eval output of {label} vs nn.BatchNorm2d loaded with its "
                     "state_dict", dtype=F32, device=device)


@points(2)
@hint("with the parameter and buffer names of nn.BatchNorm2d, nn.Module.load_state_dict "
      "works unchanged; num_batches_tracked must be a buffer (it is loaded and then counted on)")
def test_state_dict_from_builtin(student, rng, device, exercise):
    """nn.BatchNorm2d's state_dict loads into yours; outputs and running statistics continue alike"""
    c = exercise.settings["channels"]
    profile = channel_profile(rng, c)
    for kwargs in ({}, {"momentum": None}):
        model = student.MyBatchNorm2d(c, **kwargs)
        label = label_for(c, kwargs)
        builtin = torch.nn.BatchNorm2d(c, **kwargs)
        w, b = affine_values(rng, c)
        with torch.no_grad():
            builtin.weight.copy_(w)
            builtin.bias.copy_(b)
            for shape in [(4, c, 3, 3), (2, c, 4, 3), (3, c, 3, 2)]:
                builtin(make_batch(rng, shape, profile))
        sd = {k: v.clone() for k, v in builtin.state_dict().items()}
        model.load_state_dict(sd)
        if device != "cpu":
            model.to(device)
        truth = torch.nn.BatchNorm2d(c, **kwargs).double()
        truth.load_state_dict(sd)
        model.eval()
        truth.eval()
        x = make_batch(rng, (3, c, 3, 4), profile)
        with torch.no_grad():
            want = truth(x.to(F64))
        scale = output_scale(x, want, truth.running_mean, truth.running_var, truth.weight, truth.bias)
        check_output(model(x.to(device)), want, scale, what=f"the eval output of {label} after loading "
                     "nn.BatchNorm2d's state_dict", dtype=F32, device=device)
        # one more training batch on both: the loaded count and statistics carry on
        model.train()
        truth.train()
        x = make_batch(rng, (4, c, 2, 3), profile)
        with torch.no_grad():
            want = truth(x.to(F64))
        scale = output_scale(x, want, None, None, truth.weight, truth.bias)
        check_output(model(x.to(device)), want, scale, what=f"the training output of {label} after loading "
                     "nn.BatchNorm2d's state_dict", dtype=F32, device=device)
        got = student.probe(running_stats, model)
        nbt = got["num_batches_tracked"]
        checks.expect_tensor(nbt, what=f"num_batches_tracked of {label}", shape=())
        if int(nbt) != 4:
            checks.fail(f"num_batches_tracked of {label} is {int(nbt)} after loading a state_dict "
                        "with 3 and one more training batch (expected 4)")
        want = {key: getattr(truth, key).detach() for key in ("running_mean", "running_var")}
        scales = running_scales(want, update_seen(initial_seen(c), sd))
        for key in ("running_mean", "running_var"):
            assert_scaled_close(got[key], want[key], scales[key], what=f"{key} of {label} one training "
                                "batch after loading nn.BatchNorm2d's state_dict", dtype=F32)


@points(2)
@hint("check x.dim() == 4, and that N * H * W > 1 before computing batch statistics; "
      "raise ValueError otherwise")
def test_value_errors(student, reference, rng, device, exercise):
    """ValueError for non-4-D input and for one value per channel in training"""
    c = exercise.settings["channels"]
    pair = Pair(student, reference, rng, c, device=device)
    profile = channel_profile(rng, c)
    x4 = make_batch(rng, (3, c, 2, 2), profile).to(device)
    bad_inputs = [x4.flatten(2), x4.flatten(1), x4.unsqueeze(-1)]   # 3-D, 2-D, 5-D
    for training in (True, False):
        pair.s.train(training)
        mode = "training" if training else "eval"
        for bad in bad_inputs:
            checks.assert_raises(ValueError, pair.s, bad, what=f"{pair.label()} in {mode} mode on a "
                                 f"{bad.dim()}-D input of shape {tuple(bad.shape)}")
    pair.s.train()
    one = make_batch(rng, (1, c, 1, 1), profile).to(device)
    checks.assert_raises(ValueError, pair.s, one, what=f"{pair.label()} in training mode on an input "
                         f"of shape (1, {c}, 1, 1) (one value per channel)")
    nostats = student.MyBatchNorm2d(c, track_running_stats=False)
    if device != "cpu":
        nostats.to(device)
    nostats.eval()
    checks.assert_raises(ValueError, nostats, one, what=f"MyBatchNorm2d({c}, track_running_stats=False) "
                         f"in eval mode on an input of shape (1, {c}, 1, 1) (batch statistics from one "
                         "value per channel)")
    # N = 1 with H * W > 1 is an ordinary batch; eval mode takes anything.  (A fresh pair: a
    # failed call above may already have counted a batch, as nn.BatchNorm2d does.)
    pair = Pair(student, reference, rng, c, device=device)
    train_steps(pair, rng, profile, [(1, c, 3, 2), (2, c, 1, 2)], grads=False)
    pair.eval()
    for shape in [(1, c, 1, 1), (2, c, 1, 1)]:
        x = make_batch(rng, shape, profile)
        got, want = pair.forward(x)
        check_output(got, want, pair.output_scale(x, want),
                     what=f"the output of {pair.label()} in eval mode on a batch {shape}",
                     dtype=F32, device=device)


@points(2)
@hint("compute the statistics with plain tensor operations (mean, var, sums); the built-in "
      "batch/instance/group/layer norm functions are not allowed")
def test_no_builtin_batch_norm(student, reference, rng, device, exercise):
    """No built-in batch/instance/group/layer norm (ATen operators traced)"""
    c = exercise.settings["channels"]
    banned = exercise.banned.aten
    profile = channel_profile(rng, c)
    ops = set()
    for kwargs in ({}, {"track_running_stats": False, "affine": False}):
        pair = Pair(student, reference, rng, c, device=device, **kwargs)
        x = make_batch(rng, (3, c, 3, 3), profile)
        g = checks.randn(rng, 3, c, 3, 3)
        got = pair.s.with_grad(g.to(device), wrt=[0], params=True, trace_ops=True)(x.to(device))
        want = pair.r.with_grad(g.to(F64), wrt=[0], params=True)(x.to(F64))
        pair._after(x)
        check_step(pair, got, want, x, g, what=f"{pair.label()} in training mode")
        ops.update(got.ops or [])
        pair.eval()
        out, traced = pair.s.traced(x.to(device))
        want = pair.r(x.to(F64))
        check_output(out, want, pair.output_scale(x, want), what=f"the output of {pair.label()} in eval mode",
                     dtype=F32, device=device)
        ops.update(traced)
    checks.assert_ops_absent(ops, banned, what="MyBatchNorm2d (forward and backward)")
