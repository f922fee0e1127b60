"""Grader for unet (notes 003, exercises 7.5, 8.6, Challenge 3).

Everything is behavioural: the model runs in the student's worker, the judge
looks at what comes back.  Architecture is checked by tracing the ATen ops of
one forward pass (``trace_forward``): convolutions, batch norms and torch.cat
calls, with the storage each tensor lives in, so that "the concatenated tensor
is the encoder's level-i output" is a fact about the run, not about names.
"""
import math

import torch

from graders import checks
from graders.checks import hint, points
from runner.client import StudentRaised

SMALL = dict(base_channels=8, depth=3)   # trace, gradient, speed
TRACE_SIZE = (32, 48)                    # non-square, so levels are unambiguous: 32x48 .. 4x6


# ---- probes (their source is visible to the submission: no thresholds here) -----------

def trace_forward(model, x):
    """One training-mode forward under a dispatch mode; returns what ran, op by op."""
    from torch.utils._python_dispatch import TorchDispatchMode

    events, keep = [], []

    def info(t):
        return {"shape": list(t.shape), "storage": t.untyped_storage().data_ptr(),
                "requires_grad": bool(t.requires_grad)}

    class Recorder(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls):  # else the first use imports torch._dynamo (seconds)
            return False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            outs = [t for t in (out if isinstance(out, (tuple, list)) else [out])
                    if isinstance(t, torch.Tensor)]
            keep.extend(outs)  # storages stay alive: no address is reused during the trace
            event = {"op": str(func.overloadpacket),
                     "outputs": [info(t) for t in outs if t.dim() == 4]}
            name = event["op"]
            if name == "aten.cat":
                tensors = args[0] if args else kwargs.get("tensors", [])
                dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
                event["dim"] = int(dim)
                event["inputs"] = [info(t) for t in tensors]
            elif name == "aten.convolution":
                event["kernel"] = list(args[1].shape[2:])
                event["transposed"] = bool(args[6]) if len(args) > 6 else False
            elif "batch_norm" in name and "backward" not in name:
                event["input"] = list(args[0].shape)
            events.append(event)
            return out

    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), Recorder():
        model(x)
    return {"events": events, "input_storage": x.untyped_storage().data_ptr()}


def parameter_summary(model):
    return [[name, p.numel(), bool(p.requires_grad)] for name, p in model.named_parameters()]


def train_denoiser(kwargs, noisy, clean, test_noisy, steps, batch_size, lr, seed):
    """Adam on MSE for a fixed number of steps; returns the losses and eval-mode outputs."""
    torch.manual_seed(seed)
    model = submission.UNet(**kwargs).to(noisy.device)  # noqa: F821 (a probe global)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    order = torch.randint(0, noisy.shape[0], (steps, batch_size)).to(noisy.device)
    for step in range(steps):
        idx = order[step]
        loss = F.mse_loss(model(noisy[idx]), clean[idx])  # noqa: F821
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        out = model(test_noisy)
    return {"losses": losses, "output": out.detach().clone()}


def make_train_step(model):
    """A closure doing one training-mode forward + backward (timed by the judge)."""
    model.train()

    def step(x):
        model.zero_grad(set_to_none=True)
        out = model(x)
        out.square().mean().backward()
        return torch.tensor(list(out.shape))

    return step


# ---- judge-side helpers -----------------------------------------------------------------

def build(namespace, kwargs, device):
    """A model in the worker, on the test's device."""
    model = namespace.UNet(**kwargs)
    if device != "cpu":  # GPU-only
        model.to(device)
    return model


def describe(kwargs):
    return "UNet(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def levels(size, depth):
    h, w = size
    return [(h >> i, w >> i) for i in range(depth + 1)]


def spatial(t):
    return tuple(t["shape"][-2:])


def first_index_at(events, res):
    """Index of the first op producing a 4-D tensor at spatial size ``res`` (None if never)."""
    for k, e in enumerate(events):
        if any(spatial(o) == res for o in e["outputs"]):
            return k
    return None


def encoder_storages(events, res, end):
    """Storages of 4-D tensors at ``res`` made before event ``end`` (the encoder side of that level)."""
    return {o["storage"] for e in events[:end] for o in e["outputs"] if spatial(o) == res}


def make_images(gen, n, size):
    """Piecewise-smooth clean images (N, 1, size, size): a gradient, 3 rectangles, 2 discs."""
    coords = torch.linspace(-1, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")

    def u(lo, hi):
        return torch.rand(n, 1, 1, generator=gen, dtype=torch.float64) * (hi - lo) + lo

    img = u(-0.5, 0.5) + u(-0.5, 0.5) * xx + u(-0.5, 0.5) * yy
    for _ in range(3):
        x0, y0 = u(-1.0, 0.6), u(-1.0, 0.6)
        x1, y1 = x0 + u(0.25, 1.0), y0 + u(0.25, 1.0)
        inside = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
        img = torch.where(inside, u(-1.0, 2.0), img)
    for _ in range(2):
        cx, cy, r = u(-0.8, 0.8), u(-0.8, 0.8), u(0.15, 0.5)
        img = torch.where((xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2, u(-1.0, 2.0), img)
    return img.unsqueeze(1)


def denoising_data(settings):
    """(train_noisy, train_clean, test_noisy, test_clean), float32, from a fixed seed."""
    gen = torch.Generator().manual_seed(int(settings["data_seed"]))
    n_train, n_test = int(settings["n_train"]), int(settings["n_test"])
    clean = make_images(gen, n_train + n_test, int(settings["image_size"]))
    noisy = clean + float(settings["noise_sigma"]) * torch.randn(clean.shape, generator=gen,
                                                                 dtype=torch.float64)
    clean, noisy = clean.float(), noisy.float()
    return noisy[:n_train], clean[:n_train], noisy[n_train:], clean[n_train:]


# ---- tests --------------------------------------------------------------------------------

@points(3)
@hint("padding=1 keeps the size through each 3x3 conv; MaxPool2d(2) halves it and "
      "ConvTranspose2d(c, c // 2, kernel_size=2, stride=2) doubles it exactly")
def test_output_shapes(student, rng, device):
    """(N, in, H, W) -> (N, out, H, W) for several configurations, sizes and batch sizes"""
    cases = [({}, [(2, 1, 32, 32)]),
             (dict(in_channels=3, out_channels=2, base_channels=8, depth=2), [(3, 3, 16, 24), (1, 3, 20, 12)]),
             (dict(base_channels=8, depth=3), [(5, 1, 24, 40), (1, 1, 16, 32)]),
             (dict(base_channels=4, depth=1), [(2, 1, 6, 10)]),
             (dict(base_channels=4, depth=4), [(2, 1, 32, 16)])]
    for kwargs, shapes in cases:
        model = build(student, kwargs, device)
        out_ch = kwargs.get("out_channels", 1)
        for shape in shapes:
            x = checks.randn(rng, *shape).to(device)
            what = f"{describe(kwargs)} on an input of shape {shape}"
            y = checks.expect_tensor(model(x), what=what, shape=(shape[0], out_ch) + shape[2:],
                                     dtype=torch.float32, device=device)
            checks.assert_finite(y, what=what)


@points(2)
@hint("check the size at the start of forward: if H or W is not divisible by 2**depth, "
      "raise ValueError('H and W must be divisible by 2**depth ...'); or make every size work "
      "(e.g. F.interpolate the upsampled map to the skip's size)")
def test_other_sizes(student, rng, device):
    """Sizes not divisible by 2**depth work or raise ValueError mentioning 'divisible'"""
    cases = [(dict(base_channels=8, depth=3), (2, 1, 28, 28)),   # the notes' MNIST size
             (dict(base_channels=8, depth=2), (2, 1, 18, 18)),
             (dict(base_channels=8, depth=3), (2, 1, 20, 36))]
    for kwargs, shape in cases:
        model = build(student, kwargs, device)
        x = checks.randn(rng, *shape).to(device)
        what = f"{describe(kwargs)} on an input of shape {shape}"
        try:
            y = model(x)
        except StudentRaised as e:
            if e.exc_type == "NotImplementedError":
                raise
            if e.exc_type != "ValueError":
                checks.fail(f"{what} raised {e.exc_type} ({e.message[:200]}); a size not divisible by "
                            "2**depth must either work or raise ValueError saying that H and W must be "
                            "divisible by 2**depth")
            if "divisible" not in e.message.lower():
                checks.fail(f"{what} raised ValueError, but its message should say that H and W must be "
                            f"divisible by 2**depth (it says: {e.message[:200]!r})")
            continue
        checks.expect_tensor(y, what=what + " (sizes not divisible by 2**depth must keep H and W "
                             "or raise ValueError)", shape=(shape[0], 1) + shape[2:])
        checks.assert_finite(y, what=what)


@points(3)
@hint("keep each encoder block's output (before pooling) and torch.cat it with the upsampled "
      "decoder features at the same level: torch.cat([up, skip], dim=1)")
def test_skip_connections(student, rng, device):
    """At every level, torch.cat along channels takes the encoder's block output"""
    model = build(student, SMALL, device)
    depth, base = SMALL["depth"], SMALL["base_channels"]
    x = checks.randn(rng, 2, 1, *TRACE_SIZE).to(device)
    trace = student.probe(trace_forward, model, x)
    events = trace["events"]
    res = levels(TRACE_SIZE, depth)
    cats = [e for e in events if e["op"] == "aten.cat"]
    for i in range(depth):
        c = base * 2 ** i
        where = f"level {i} ({res[i][0]}x{res[i][1]} for a {TRACE_SIZE[0]}x{TRACE_SIZE[1]} input, {c} channels)"
        end = first_index_at(events, res[i + 1])
        if end is None:
            checks.fail(f"{describe(SMALL)} never makes a feature map at {res[i + 1][0]}x{res[i + 1][1]}: "
                        f"the encoder should halve H and W {depth} times")
        encoder = encoder_storages(events, res[i], end) - {trace["input_storage"]}
        at_level = [e for e in cats if e["dim"] % 4 == 1 and e["outputs"]
                    and spatial(e["outputs"][0]) == res[i]]
        if not at_level:
            checks.fail(f"no concatenation along the channel dimension at {where}: the decoder must "
                        "torch.cat the encoder's features at every level (a U-Net without skip "
                        "connections is a plain autoencoder)")
        skips = [t for e in at_level for t in e["inputs"]
                 if t["storage"] in encoder and spatial(t) == res[i] and t["shape"][1] == c]
        if not skips:
            checks.fail(f"the concatenation at {where} does not take the encoder's level-{i} block output "
                        f"({c} channels, computed before downsampling) as one of its inputs")
        if not any(t["requires_grad"] for t in skips):
            checks.fail(f"the skip connection at {where} is detached: no gradient flows through it "
                        "(remove .detach() / .data / torch.no_grad from the skip path)")


@points(2)
@hint("each encoder level is conv3x3 -> BatchNorm2d -> ReLU -> conv3x3 -> BatchNorm2d -> ReLU "
      "with base_channels * 2**i channels, and there are depth downsamplings before the bottleneck")
def test_encoder_structure(student, rng, device):
    """Encoder: depth levels of two 3x3 conv + BatchNorm with base*2**i channels, then a bottleneck"""
    model = build(student, SMALL, device)
    depth, base = SMALL["depth"], SMALL["base_channels"]
    x = checks.randn(rng, 2, 1, *TRACE_SIZE).to(device)
    trace = student.probe(trace_forward, model, x)
    events = trace["events"]
    res = levels(TRACE_SIZE, depth)
    for i in range(depth + 1):
        where = f"resolution {res[i][0]}x{res[i][1]} (level {i}, input {TRACE_SIZE[0]}x{TRACE_SIZE[1]})"
        if first_index_at(events, res[i]) is None:
            checks.fail(f"{describe(SMALL)} never makes a feature map at {where}: the encoder should "
                        f"halve H and W {depth} times, then the bottleneck")
        end = first_index_at(events, res[i + 1]) if i < depth else len(events)
        end = len(events) if end is None else end
        before = events[:end]
        convs = [e for e in before if e["op"] == "aten.convolution" and not e["transposed"]
                 and e["kernel"] == [3, 3] and e["outputs"] and spatial(e["outputs"][0]) == res[i]]
        if i == depth:
            if not convs:
                checks.fail(f"no 3x3 convolution at {where}: the bottleneck is missing")
            continue
        c = base * 2 ** i
        right = [e for e in convs if e["outputs"][0]["shape"][1] == c]
        if len(right) < 2:
            found = sorted({e["outputs"][0]["shape"][1] for e in convs})
            checks.fail(f"encoder level {i} should have two 3x3 convolutions with base_channels * 2**{i} = {c} "
                        f"output channels at {where}; found {len(right)} (3x3 conv output channels "
                        f"there: {found or 'none'})")
        norms = [e for e in before if "batch_norm" in e["op"] and "backward" not in e["op"]
                 and "input" in e and e["input"][1] == c and tuple(e["input"][-2:]) == res[i]]
        if len(norms) < 2:
            checks.fail(f"encoder level {i} should apply BatchNorm after each of its two convolutions "
                        f"(found {len(norms)} batch norms over {c} channels at {where})")


@points(2)
@hint("a parameter without a gradient is not used in forward, or used through .detach(), "
      ".data or torch.no_grad(); delete unused layers")
def test_every_parameter_gets_gradient(student, rng, device):
    """A backward pass from the output reaches every parameter"""
    model = build(student, SMALL, device)
    x = checks.randn(rng, 4, 1, 16, 16).to(device)
    g = checks.randn(rng, 4, 1, 16, 16).to(device)
    result = model.with_grad(g, wrt=[0], params=True)(x)
    checks.expect_tensor(result.output, what=f"{describe(SMALL)} on (4, 1, 16, 16)", shape=(4, 1, 16, 16))
    gx = result.input_grads[0]
    if gx is None:
        checks.fail("the output does not depend on the input through autograd")
    checks.assert_finite(gx, what="the gradient with respect to the input")
    summary = student.probe(parameter_summary, model)
    frozen = [name for name, _, trainable in summary if not trainable]
    if frozen:
        checks.fail(f"parameters {frozen[:3]} do not require grad: every parameter must be trainable")
    if not summary:
        checks.fail(f"{describe(SMALL)} has no parameters")
    for name, _, _ in summary:
        grad = result.param_grads.get(name)
        if grad is None:
            checks.fail(f"parameter {name!r} gets no gradient: it is not used in forward, or it is "
                        "detached from the output")
        checks.assert_finite(grad, what=f"the gradient of parameter {name!r}")
        # A conv bias right before BatchNorm has an (analytically) zero gradient: allowed.
        if not name.endswith("bias") and not bool((grad != 0).any()):
            checks.fail(f"parameter {name!r} gets an all-zero gradient: it does not affect the output")


@points(2)
@hint("in eval mode BatchNorm must use its running statistics (nn.BatchNorm2d does this after "
      "model.eval(); F.batch_norm needs training=self.training) and dropout must be off")
def test_eval_mode(student, rng, device):
    """Eval mode: deterministic, and a sample's output does not depend on its batch"""
    kwargs = dict(base_channels=8, depth=2)
    model = build(student, kwargs, device)
    for _ in range(3):  # move the running statistics away from their initial values
        model(checks.randn(rng, 4, 1, 16, 16, scale=2.0, offset=0.5).to(device))
    model.eval()
    if model.attr("training"):
        checks.fail("model.eval() does not put the model in eval mode (model.training is still True)")
    x = checks.randn(rng, 6, 1, 16, 16, scale=2.0, offset=0.5).to(device)
    what = f"{describe(kwargs)} in eval mode"
    y1 = checks.expect_tensor(model(x), what=what, shape=(6, 1, 16, 16))
    y2 = checks.expect_tensor(model(x), what=what, shape=(6, 1, 16, 16))
    scale = float(y1.abs().max()) + 1e-6
    checks.assert_finite(y1, what=what)
    diff = float((y1 - y2).abs().max())
    if diff > 1e-6 * scale:
        checks.fail(f"{what} gives different outputs for the same batch on two calls (max difference "
                    f"{diff:.3g}): something random is still active (dropout?)")
    for k in (0, 4):
        alone = checks.expect_tensor(model(x[k:k + 1]), what=what, shape=(1, 1, 16, 16))
        diff = float((alone - y1[k:k + 1]).abs().max())
        if diff > 1e-4 * scale:
            checks.fail(f"{what}: the output for sample {k} alone differs from its output inside a batch "
                        f"of 6 (max difference {diff:.3g}, output scale {scale:.3g}): eval mode must not "
                        "use batch statistics")


@points(1)
def test_parameter_count(student, reference, rng, device):
    """Parameter count within 0.5x-2x of the reference's for the same arguments"""
    for kwargs in ({}, dict(in_channels=3, out_channels=2, base_channels=8, depth=2)):
        got = sum(n for _, n, _ in student.probe(parameter_summary, student.UNet(**kwargs)))
        want = sum(n for _, n, _ in reference.probe(parameter_summary, reference.UNet(**kwargs)))
        ratio = got / want
        if not 0.5 <= ratio <= 2.0:
            checks.fail(f"{describe(kwargs)} has {got:,} parameters, {ratio:.2f}x the reference's {want:,} "
                        "(allowed 0.5x-2x): check the channel counts (base_channels * 2**i at level i) "
                        "and the number of levels")


@points(4)
@hint("the output layer is a plain 1x1 conv: no sigmoid/tanh/ReLU after it (the targets can be "
      "negative or above 1); and the skips must carry the fine detail the bottleneck loses")
def test_learns_to_denoise(student, rng, device, exercise, note):
    """Trained by the grader on synthetic noisy images, it gains >= 3.5 dB PSNR on held-out ones"""
    s = exercise.settings
    noisy, clean, test_noisy, test_clean = denoising_data(s)
    kwargs = dict(base_channels=8, depth=2)
    result = student.probe(train_denoiser, kwargs, noisy.to(device), clean.to(device),
                           test_noisy.to(device), steps=int(s["train_steps"]),
                           batch_size=int(s["batch_size"]), lr=float(s["lr"]), seed=int(s["train_seed"]))
    if not isinstance(result, dict):
        checks.fail("the training probe returned something unexpected")
    out = checks.expect_tensor(result.get("output"), what=f"the trained {describe(kwargs)} on held-out images",
                               shape=tuple(test_clean.shape), dtype=torch.float32)
    losses = [float(v) for v in result.get("losses", [])]
    if not losses or not all(math.isfinite(v) for v in losses):
        checks.fail("the training loss became NaN or infinite")
    checks.assert_finite(out, what="the trained model's output on held-out images")
    out = out.cpu().double()
    mse_noisy = float(((test_noisy.double() - test_clean.double()) ** 2).mean())
    mse_out = float(((out - test_clean.double()) ** 2).mean())
    gain = 10 * math.log10(mse_noisy / max(mse_out, 1e-12))
    need = float(s["min_psnr_gain_db"])
    summary = (f"held-out PSNR gain {gain:.2f} dB over the noisy input (need {need:g} dB; "
               f"training loss {losses[0]:.3f} -> {sum(losses[-10:]) / len(losses[-10:]):.3f})")
    if gain < need:
        remarks = []
        if float(out.min()) >= 0 and float(test_clean.min()) < 0:
            remarks.append("your outputs are never negative although many targets are: "
                           "is there an output activation (sigmoid, ReLU) after the final 1x1 conv?")
        elif float(out.max()) <= 1 and float(test_clean.max()) > 1:
            remarks.append("your outputs never exceed 1 although many targets do: "
                           "is there an output activation (sigmoid, tanh, clamp) after the final 1x1 conv?")
        checks.fail(" ".join([f"the model does not learn to denoise well enough: {summary}"] + remarks))
    note(summary)


@points(2)
def test_speed(student, reference, rng, device, exercise, note):
    """Forward + backward at most 2x the reference's time (base 8, depth 3, batch 32, 16x16)"""
    s = exercise.settings
    n, size = int(s["speed_batch"]), int(s["speed_size"])
    student_step = student.probe(make_train_step, build(student, SMALL, device))
    reference_step = reference.probe(make_train_step, build(reference, SMALL, device))
    result = checks.measure_speed(student_step, reference_step,
                                  lambda i: (checks.randn(rng, n, 1, size, size).to(device),),
                                  repeats=9, warmup=2, device=device)

    def outputs_close(got, want):
        checks.assert_equal(got, want, what="the output shape in the timed runs")

    note(checks.assert_speed(result, exercise.speed_budget, what="forward + backward",
                             outputs_close=outputs_close))
