"""Grader for custom_sigmoid (notes 003, exercise 2.6).

The truth is computed here, in the judge, in float64 (``torch.sigmoid`` on
float64 copies of the inputs): forward sigma(x), backward grad * s * (1 - s).
Results in float16/bfloat16/float32 are compared with tolerances from their
own dtype, so a one-ulp difference passes and any correct formula (two-sided
exp, tanh, softplus, computing in float32 and rounding back) passes.
"""
import torch

from graders import checks
from graders.checks import hint, points

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16",
         torch.float32: "float32", torch.float64: "float64"}


def logits(rng, *shape, dtype=torch.float32, scale=4.0):
    """Inputs of both signs, most in the range where sigma is not saturated.

    (Not checks.randn: it cannot make a 0-d tensor, torch.randn(*(), ...) has no size.)
    """
    return (torch.randn(shape, generator=rng, dtype=torch.float64) * scale).to(dtype)


def extremes(rng, settings, dtype):
    """+-each extreme magnitude (e.g. 1e4, 100, 89, 20, 11.5: exp overflows in some dtype),
    jittered by up to 5% so that no exact value can be special-cased, plus random values."""
    mags = torch.tensor(settings["extreme_values"], dtype=torch.float64)
    jitter = 1 + 0.05 * torch.rand(mags.shape, generator=rng, dtype=torch.float64)
    mags = mags * jitter
    x = torch.cat([mags, -mags, checks.randn(rng, 8, scale=6.0, dtype=torch.float64)])
    return x[torch.randperm(x.numel(), generator=rng)].to(dtype)


def sigmoid64(x):
    """The judge's float64 truth."""
    return torch.sigmoid(x.detach().to("cpu", torch.float64))


def grad64(x, g):
    s = sigmoid64(x)
    return g.detach().to("cpu", torch.float64) * s * (1 - s)


def assert_finite_at(values, x, *, what):
    """Like checks.assert_finite, but names the (public, extreme) input where it breaks."""
    checks.expect_tensor(values, what=what, shape=tuple(x.shape))
    bad = ~torch.isfinite(values.detach().cpu())
    if bad.any():
        xs = x.detach().cpu().double()[bad]
        worst = xs[xs.abs().argmin()]
        kind = "NaN" if torch.isnan(values.detach().cpu()[bad]).any() else "infinity"
        checks.fail(f"{what} contains {kind} (NaN or infinity) at {int(bad.sum())} of {x.numel()} "
                    f"inputs, e.g. at x ~ {float(worst):.2g} ({NAMES.get(x.dtype, x.dtype)}): "
                    "an exponential overflows there")


def only_float32_precise(got, truth):
    """A float64 result off by float32-sized errors only: it was computed in float32."""
    if not isinstance(got, torch.Tensor) or got.dtype != torch.float64 or got.shape != truth.shape:
        return False
    err = (got.detach().cpu() - truth).abs()
    return bool(torch.isfinite(err).all()) and float(err.max()) <= 4e-6


FLOAT32_PRECISION = ("float64 results have only float32 precision: keep float64 inputs in float64 "
                     "(upcast only float16/bfloat16)")


def assert_forward_close(got, x, *, what, dtype):
    """The output against the float64 truth, naming a float32 computation of float64 inputs."""
    truth = sigmoid64(x)
    try:
        checks.assert_close(got, truth, what=what, dtype=dtype)
    except checks.Failure as failure:
        if only_float32_precise(got, truth):
            checks.fail(f"{failure}: {FLOAT32_PRECISION}")
        raise


BACKWARD_MISTAKES = (
    ("backward ignores grad_output: it returns s * (1 - s) instead of grad_output * s * (1 - s)",
     lambda g, s, x: s * (1 - s)),
    ("backward computes grad_output * s * s (the derivative is s * (1 - s))",
     lambda g, s, x: g * s * s),
    ("backward computes grad_output * (1 - s) (the derivative is s * (1 - s))",
     lambda g, s, x: g * (1 - s)),
    ("backward computes grad_output * s (the derivative is s * (1 - s))",
     lambda g, s, x: g * s),
    ("backward uses the input x where it needs the output s = sigma(x): x * (1 - x)",
     lambda g, s, x: g * x * (1 - x)),
    ("backward has the wrong sign",
     lambda g, s, x: -g * s * (1 - s)),
)


def diagnose_backward(grad, x, g):
    """A name for a wrong gradient, if it matches a classic mistake (judged in float64)."""
    if not isinstance(grad, torch.Tensor) or grad.shape != x.shape:
        return None
    got = grad.detach().cpu().double()
    x64 = x.detach().cpu().double()
    g64 = g.detach().cpu().double()
    s = torch.sigmoid(x64)
    for message, formula in BACKWARD_MISTAKES:
        if torch.allclose(got, formula(g64, s, x64), rtol=2e-2, atol=2e-2):
            return message
    return None


def check_backward(result, x, g, *, what, dtype, forward=None):
    """Output (also after backward) and gradient against the float64 truth.

    ``forward`` (the student's my_sigmoid) tells, when the output read after backward is
    wrong, whether a plain forward call is right: then backward changed the output in place.
    """
    checks.expect_tensor(result.output, what=what, shape=tuple(x.shape))
    grad = result.input_grads[0]
    if grad is None:
        checks.fail(f"the gradient of {what} is missing: the output is not connected to x "
                    "through autograd")
    label = f"the gradient of {what}"
    try:
        checks.expect_tensor(grad, what=label, shape=tuple(x.shape))
        checks.assert_close(grad, grad64(x, g), what=label, dtype=dtype, ulps=16)
    except checks.Failure as failure:
        mistake = diagnose_backward(grad, x, g)
        if mistake is None and only_float32_precise(grad, grad64(x, g)):
            mistake = FLOAT32_PRECISION
        if mistake is None:
            raise
        checks.fail(f"{failure}: {mistake}")
    try:
        checks.assert_close(result.output, sigmoid64(x), what=f"{what} (its output, read after backward)",
                            dtype=dtype)
    except checks.Failure as failure:
        if forward is None:
            raise
        try:
            checks.assert_close(forward(x.to(result.output.device)), sigmoid64(x), what=what,
                                dtype=dtype)
        except checks.Failure:
            raise failure from None
        checks.fail(f"{failure}, although a plain forward call is right: backward modified the "
                    "forward's output in place (e.g. s.mul_(...) on the saved output); compute "
                    "new tensors instead")


# ---- forward -------------------------------------------------------------------------------

@points(3)
def test_matches_sigmoid(student, rng, device):
    """Forward matches torch.sigmoid (float32, float64)"""
    x = logits(rng, 5, 33)
    assert_forward_close(student.my_sigmoid(x.to(device)), x, dtype=torch.float32,
                         what="my_sigmoid(x) for float32 x")
    x64 = logits(rng, 257, dtype=torch.float64, scale=6.0)
    assert_forward_close(student.my_sigmoid(x64.to(device)), x64, dtype=torch.float64,
                         what="my_sigmoid(x) for float64 x")


def call_transposed(x):
    """Probe: my_sigmoid of a non-contiguous view (the wire makes tensors contiguous),
    with the input as it is after the call."""
    xt = x.t()
    y = submission.my_sigmoid(xt)  # noqa: F821 (a probe global)
    return [y, xt.contiguous()]


@points(2)
def test_shapes_and_dtypes(student, rng, device):
    """Any shape (0-d, empty, non-contiguous); dtype and device preserved; input unchanged"""
    for dtype in FLOATS:
        name = NAMES[dtype]
        shapes = [(), (0,), (2, 3, 4)]
        for shape in shapes:
            x = logits(rng, *shape, dtype=dtype)
            what = f"my_sigmoid(x) for {name} x of shape {shape}"
            got = student.my_sigmoid(x.to(device))
            checks.expect_tensor(got, what=what, shape=shape, dtype=dtype, device=device)
            assert_forward_close(got, x, what=what, dtype=dtype)
        x = logits(rng, 6, 5, dtype=dtype)
        what = f"my_sigmoid(x) for a non-contiguous (transposed) {name} x"
        y, after = student.probe(call_transposed, x.to(device))
        x = x.t()
        checks.expect_tensor(y, what=what, shape=(5, 6), dtype=dtype, device=device)
        assert_forward_close(y, x, what=what, dtype=dtype)
        if not (isinstance(after, torch.Tensor) and after.shape == x.shape
                and torch.equal(after.cpu(), x)):
            checks.fail(f"my_sigmoid(x) modified its input x in place ({name}); "
                        "it must return a new tensor and leave x unchanged")


@points(3)
@hint("float16 overflows already at exp(11.1) = 65504; compute the low-precision dtypes in "
      "float32 and round back once with .to(x.dtype), or use a form in which every exp "
      "has a non-positive argument")
def test_low_precision(student, rng, device):
    """Forward matches torch.sigmoid in float16 and bfloat16, dtype preserved"""
    for dtype in (torch.float16, torch.bfloat16):
        x = logits(rng, 40, 50, dtype=dtype, scale=5.0)
        got = student.my_sigmoid(x.to(device))
        what = f"my_sigmoid(x) for {NAMES[dtype]} x"
        checks.expect_tensor(got, what=what, shape=(40, 50), dtype=dtype, device=device)
        assert_finite_at(got, x, what=what)
        assert_forward_close(got, x, what=what, dtype=dtype)


@points(3)
@hint("exp(-x) overflows for x < -88 in float32 (x < -11 in float16), and exp(x) / (1 + exp(x)) "
      "is inf / inf = NaN for large x: with e = exp(-|x|) (never overflows) use 1 / (1 + e) for "
      "x >= 0 and e / (1 + e) for x < 0")
def test_extreme_inputs(student, rng, device, exercise):
    """No NaN or infinity and still accurate for inputs up to +-1e4, in every dtype"""
    for dtype in FLOATS:
        x = extremes(rng, exercise.settings, dtype)
        got = student.my_sigmoid(x.to(device))
        what = f"my_sigmoid(x) for {NAMES[dtype]} x with entries up to +-1e4"
        checks.expect_tensor(got, what=what, shape=tuple(x.shape), dtype=dtype, device=device)
        assert_finite_at(got, x, what=what)
        assert_forward_close(got, x, what=what, dtype=dtype)


# ---- backward ------------------------------------------------------------------------------

@points(3)
@hint("backward returns grad_output * s * (1 - s), where s = sigma(x) is the output you saved "
      "in forward with ctx.save_for_backward")
def test_backward_matches(student, rng, device):
    """Backward is grad_output * s * (1 - s), in every dtype"""
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = logits(rng, 6, 7, dtype=dtype)
        g = checks.randn(rng, 6, 7, dtype=dtype)
        result = student.my_sigmoid.with_grad(g.to(device), wrt=[0])(x.to(device))
        check_backward(result, x, g, what=f"my_sigmoid(x) for {NAMES[dtype]} x", dtype=dtype,
                       forward=student.my_sigmoid)


@points(2)
@hint("exp(-x) / (1 + exp(-x))**2 is inf / inf = NaN once exp(-x) overflows (x = -100 in "
      "float32): use the saved output, s * (1 - s), which needs no exponential")
def test_backward_extreme(student, rng, device, exercise):
    """Backward is finite and accurate for inputs up to +-1e4 (and at -100)"""
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = extremes(rng, exercise.settings, dtype)
        g = checks.randn(rng, *x.shape, dtype=dtype)
        what = f"my_sigmoid(x) for {NAMES[dtype]} x with entries up to +-1e4"
        result = student.my_sigmoid.with_grad(g.to(device), wrt=[0])(x.to(device))
        grad = result.input_grads[0]
        if grad is None:
            checks.fail(f"the gradient of {what} is missing: the output is not connected to x "
                        "through autograd")
        assert_finite_at(grad, x, what=f"the gradient of {what}")
        check_backward(result, x, g, what=what, dtype=dtype, forward=student.my_sigmoid)


@points(2)
@hint("compare float64 gradients: torch.autograd.gradcheck(my_sigmoid, (x.double().requires_grad_(),))")
def test_gradcheck_float64(student, rng, device):
    """Backward agrees with finite differences (float64)"""
    x = logits(rng, 4, 5, dtype=torch.float64, scale=3.0)
    checks.numerical_gradcheck(student.my_sigmoid, [x.to(device)], what="my_sigmoid(x)", rng=rng)


# ---- the custom Function and the banned operators --------------------------------------------

def inspect_function(x):
    """Probe: how my_sigmoid's output was made, and what MySigmoid is."""
    import inspect
    y = submission.my_sigmoid(x.detach().clone().requires_grad_())  # noqa: F821 (a probe global)
    cls = getattr(submission, "MySigmoid", None)  # noqa: F821
    info = {"output_type": type(y).__name__, "is_function": False, "own_node": False,
            "static": {}, "apply_output": None}
    if isinstance(y, torch.Tensor):
        info["output"] = y.detach()
        info["grad_fn"] = type(y.grad_fn).__name__ if y.grad_fn is not None else None
    if isinstance(cls, type) and issubclass(cls, torch.autograd.Function):
        info["is_function"] = True
        node = getattr(cls, "_backward_cls", None)
        info["own_node"] = isinstance(y, torch.Tensor) and node is not None and type(y.grad_fn) is node
        info["static"] = {name: isinstance(inspect.getattr_static(cls, name, None), staticmethod)
                          for name in ("forward", "backward")}
        z = cls.apply(x.detach().clone().requires_grad_())
        if isinstance(z, torch.Tensor):
            info["apply_output"] = z.detach()
    return info


@points(3)
@hint("class MySigmoid(torch.autograd.Function) with @staticmethod forward(ctx, x) and "
      "@staticmethod backward(ctx, grad_output); my_sigmoid(x) returns MySigmoid.apply(x) "
      "(never MySigmoid.forward(...) or an expression of torch operations)")
def test_custom_function(student, rng, device):
    """MySigmoid is a torch.autograd.Function with static methods; my_sigmoid's grad_fn is its node"""
    x = logits(rng, 3, 8).to(device)
    info = student.probe(inspect_function, x)
    if info.get("output_type") != "Tensor" or "output" not in info:
        checks.fail(f"my_sigmoid(x) should return a torch.Tensor, got a {info.get('output_type')}")
    assert_forward_close(info["output"], x, what="my_sigmoid(x) for float32 x", dtype=torch.float32)
    if not info["is_function"]:
        checks.fail("MySigmoid is missing or is not a subclass of torch.autograd.Function")
    if info.get("grad_fn") is None:
        checks.fail("my_sigmoid(x) for an x that requires grad has no grad_fn: its output is "
                    "not connected to autograd (was it detached, or made under no_grad?)")
    if not info["own_node"]:
        checks.fail(f"my_sigmoid(x).grad_fn is {info['grad_fn']}, not MySigmoid's backward node: "
                    "my_sigmoid must return MySigmoid.apply(x), not an expression built from torch "
                    "operations (autograd then differentiates those operations and never calls "
                    "your backward)")
    not_static = [name for name, ok in info["static"].items() if not ok]
    if not_static:
        checks.fail(f"MySigmoid.{' and MySigmoid.'.join(not_static)} must be decorated with "
                    "@staticmethod (autograd calls them on the class, with ctx as first argument)")
    if not isinstance(info["apply_output"], torch.Tensor):
        checks.fail("MySigmoid.apply(x) does not return a tensor")
    checks.assert_close(info["output"], info["apply_output"], what="my_sigmoid(x) compared with "
                        "MySigmoid.apply(x)", ulps=0, atol=0.0, rtol=0.0)


@points(2)
@hint("write the sigmoid from torch.exp (or torch.tanh); library helpers such as "
      "torch.distributions' logits_to_probs call torch.sigmoid internally")
def test_no_sigmoid_ops(student, rng, device, exercise):
    """Forward and backward run no sigmoid-family operator (aten.sigmoid, ...)"""
    banned = exercise.banned.aten
    for dtype in (torch.float32, torch.float16):
        name = NAMES[dtype]
        x = logits(rng, 4, 6, dtype=dtype)
        out, ops = student.my_sigmoid.traced(x.to(device))
        assert_forward_close(out, x, what=f"my_sigmoid(x) for {name} x", dtype=dtype)
        checks.assert_ops_absent(ops, banned, what=f"my_sigmoid(x) ({name}, no grad)")
        # Backward correctness is judged elsewhere; here only which operators it runs.
        g = checks.randn(rng, 4, 6, dtype=dtype)
        result = student.my_sigmoid.with_grad(g.to(device), wrt=[0], trace_ops=True)(x.to(device))
        checks.assert_ops_absent(result.ops or [], banned,
                                 what=f"my_sigmoid(x) forward and backward ({name})")
