"""Grader for amp_training (notes 003, section 14.2 and Grand Challenges 1, 2, 4).

Every test builds the same seeded model, loss and optimizer in the student's
and the reference's worker (probe ``build_setup``), sends both the same
batches drawn from ``rng``, and compares what comes back in the judge:
the returned losses and the parameters after the last step.

Tolerances: correct solutions written differently (scaler always built with
``enabled=``, hand-written clipping in float64, ``get_total_norm`` checks,
backward inside the autocast block) reproduce the reference's parameters
exactly, or within 5e-6 of the largest per-element update, on CPU.
Parameters must agree within UPDATE_TOL (2%) of the largest per-element
update, leaving room for GPU rounding; the mistakes these comparisons target
are off by 17% (an extra momentum step on a non-finite batch, worst of 30
seeds) to 100% and more.  A plain float32 loop lands within ~1-3% of a
bfloat16 one, so missing autocast is left to test_autocast_active.
Returned losses match within LOSS_RTOL (identical on CPU).
"""
import math

import torch

from graders import checks
from graders.checks import hint, points
from runner.client import RemoteObject

IN, HIDDEN, OUT, BATCH = 16, 64, 8, 32
UPDATE_TOL = 0.02          # of the largest per-element update of the reference run
LOSS_RTOL = 1e-3           # returned losses (same params, same batches)
DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}


# ---- probes (run inside the workers; their source is visible to the submission) ----------

def build_setup(seed, device, n_in, hidden, n_out, lr, momentum=0.0, loss_scale=1.0,
                adam=False, record=False):
    """A seeded MLP, an MSE loss and an optimizer; with record=True, hooks log autocast state."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, n_out)).to(device)
    kind = torch.device(device).type
    log = []
    model.amp_log = log
    if record:
        def hook(module, inputs, output):
            log.append(("linear", output.dtype, torch.is_autocast_enabled(kind)))
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.register_forward_hook(hook)

    def loss_fn(output, y):
        if record:
            log.append(("loss", output.dtype, torch.is_autocast_enabled(kind)))
        return F.mse_loss(output, y) * loss_scale

    if adam:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    return model, loss_fn, optimizer


# ---- judge-side helpers ---------------------------------------------------------------------

def new_seed(rng):
    return int(torch.randint(0, 2**31 - 1, (1,), generator=rng))


def make_batches(rng, k, *, bad=None, teacher=None, noise=0.05):
    """k (x, y) pairs; batch ``bad`` gets an inf and a NaN in x; ``teacher`` makes y learnable."""
    out = []
    for i in range(k):
        x = checks.randn(rng, BATCH, IN)
        if teacher is not None:
            y = torch.tanh(x @ teacher) + noise * checks.randn(rng, BATCH, OUT)
        else:
            y = checks.randn(rng, BATCH, OUT)
        if i == bad:
            r = torch.randint(0, BATCH, (2,), generator=rng)
            c = torch.randint(0, IN, (2,), generator=rng)
            x[r[0], c[0]] = float("inf")
            x[r[1], c[1]] = float("nan")
        out.append((x, y))
    return out


def train_both(student, reference, device, batches, *, dtype, clip=None, **config):
    """Run train_amp in both workers from the same seeded setup.

    Returns (student losses, student params, reference losses, reference params, initial params)."""
    kind = torch.device(device).type
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    runs = []
    for ns in (student, reference):
        model, loss_fn, optimizer = ns.probe(build_setup, device=device, **config)
        before = model.state_dict() if ns is reference else None
        losses = ns.train_amp(model, loss_fn, batches, optimizer, device_type=kind, dtype=dtype,
                              max_grad_norm=clip)
        runs.append((losses, model.state_dict(), before))
    (s_losses, s_params, _), (r_losses, r_params, before) = runs
    return s_losses, s_params, r_losses, r_params, before


def setup(rng, *, lr=0.05, momentum=0.9, **extra):
    return dict(seed=new_seed(rng), n_in=IN, hidden=HIDDEN, n_out=OUT, lr=lr, momentum=momentum,
                **extra)


def describe(value):
    if isinstance(value, RemoteObject):
        return f"a {value.type_name} object"
    return f"a {type(value).__name__}"


def check_loss_list(losses, n, *, what, strict=False):
    """The returned losses as Python floats.  Only ``strict`` insists on the type (test_returns_*):
    elsewhere one-element tensors are accepted, so one mistake does not fail every test."""
    if not isinstance(losses, list):
        checks.fail(f"{what} should return a list of floats, got {describe(losses)}")
    if len(losses) != n:
        checks.fail(f"{what} returned {len(losses)} losses for {n} batches: one per batch, and "
                    "training must continue after a skipped step")
    out = []
    for i, v in enumerate(losses):
        if type(v) is float:
            out.append(v)
        elif not strict and isinstance(v, torch.Tensor) and v.numel() == 1:
            out.append(float(v))
        else:
            checks.fail(f"{what}: entry {i} of the returned list is {describe(v)}, not a "
                        "Python float (use loss.item())")
    return out


def check_losses_match(got, want, *, what, values=True):
    """Non-finite entries of ``want`` must be non-finite, finite ones finite and (``values``) close.

    Only test_returns_unscaled_losses compares values, so returning scaled losses costs
    that test alone."""
    for i, (g, w) in enumerate(zip(got, want)):
        if not math.isfinite(w):
            if math.isfinite(g):
                checks.fail(f"{what}: the loss of batch {i}, which contains inf/NaN, is returned "
                            "as a finite number; return the loss as computed")
            continue
        if not math.isfinite(g):
            checks.fail(f"{what}: the loss of batch {i} is {g}, expected a finite loss")
        if values and abs(g - w) > LOSS_RTOL * abs(w) + 1e-12:
            ratio = g / w if w else math.inf
            if ratio > 1 and abs(math.log2(ratio) - round(math.log2(ratio))) < 0.01:
                checks.fail(f"{what}: the loss of batch {i} is {ratio:.0f}x too large: these look "
                            "like scaled losses (scaler.scale(loss)); return the unscaled loss")
            checks.fail(f"{what}: the loss of batch {i} is off by {abs(g - w) / abs(w):.2%} "
                        "(relative)")


def flat(sd, keys, minus=None):
    parts = []
    for k in keys:
        t = sd[k].detach().to("cpu", torch.float64)
        if minus is not None:
            t = t - minus[k].detach().to("cpu", torch.float64)
        parts.append(t.flatten())
    return torch.cat(parts)


def update_ratio(got, want, before):
    """||got - before|| / ||want - before|| over all parameters."""
    keys = list(want)
    return float(flat(got, keys, before).norm() / flat(want, keys, before).norm().clamp_min(1e-30))


def check_params(got, want, before, *, what):
    """Parameters finite, and each within UPDATE_TOL of the largest reference update (+ 1e-5 rel)."""
    if not isinstance(got, dict) or set(got) != set(want):
        checks.fail(f"{what}: the model's state_dict changed its keys (do not replace modules)")
    for k in want:
        checks.expect_tensor(got[k], what=f"{what}: parameter {k!r}", shape=tuple(want[k].shape))
        checks.assert_finite(got[k], what=f"{what}: parameter {k!r}")
    moved = float(flat(want, list(want), before).abs().max())
    worst, worst_key, bad = 0.0, None, 0
    for k in want:
        g = got[k].detach().to("cpu", torch.float64)
        w = want[k].detach().to("cpu", torch.float64)
        err = (g - w).abs()
        off = err > UPDATE_TOL * moved + 1e-5 * w.abs()
        bad += int(off.sum())
        if off.any() and float(err.max()) > worst:
            worst, worst_key = float(err.max()), k
    if bad:
        checks.fail(f"{what}: {bad} parameter entries differ from the reference loop's by more "
                    f"than {UPDATE_TOL:.0%} of the largest parameter update (worst: "
                    f"{worst / moved:.0%} of it, in {worst_key!r})")


def mlp_forward(sd, x):
    """The build_setup MLP in float64, in the judge."""
    p = {k: v.detach().to("cpu", torch.float64) for k, v in sd.items()}
    h = torch.relu(x @ p["0.weight"].T + p["0.bias"])
    h = torch.relu(h @ p["2.weight"].T + p["2.bias"])
    return h @ p["4.weight"].T + p["4.bias"]


# ---- tests -------------------------------------------------------------------------------------

@points(2)
@hint("return [loss.item() for each batch]: the loss from loss_fn, not scaler.scale(loss)")
def test_returns_unscaled_losses(student, reference, rng, device):
    """Returns one Python float per batch: the unscaled loss"""
    for dtype in (torch.float16, torch.bfloat16):
        what = f"train_amp(..., dtype=torch.{DTYPE_NAMES[dtype]})"
        batches = make_batches(rng, 4)
        s_losses, _, r_losses, _, _ = train_both(student, reference, device, batches, dtype=dtype,
                                                    **setup(rng))
        s_losses = check_loss_list(s_losses, len(batches), what=what, strict=True)
        check_losses_match(s_losses, r_losses, what=what)


@points(3)
@hint("wrap both model(x) and loss_fn(output, y) in `with torch.autocast(device_type, dtype=dtype):`")
def test_autocast_active(student, rng, device):
    """Forward and loss run under torch.autocast(device_type, dtype)"""
    kinds = ["cpu"] + (["cuda"] if device.startswith("cuda") else [])  # GPU machines check both
    for kind in kinds:
        for dtype in (torch.bfloat16, torch.float16):
            name = DTYPE_NAMES[dtype]
            what = f"train_amp(..., device_type={kind!r}, dtype=torch.{name})"
            batches = [(x.to(kind), y.to(kind)) for x, y in make_batches(rng, 3)]
            model, loss_fn, optimizer = student.probe(build_setup, device=kind, record=True,
                                                      **setup(rng))
            losses = student.train_amp(model, loss_fn, batches, optimizer, device_type=kind,
                                       dtype=dtype)
            losses = check_loss_list(losses, len(batches), what=what)
            log = model.attr("amp_log")
            linear = [e for e in log if e[0] == "linear"]
            loss = [e for e in log if e[0] == "loss"]
            if not linear or not loss:
                checks.fail(f"{what} never called the model and loss_fn")
            if not all(e[2] for e in linear):
                off = sum(not e[2] for e in linear)
                checks.fail(f"{what}: {off} of {len(linear)} Linear layer calls ran with autocast "
                            f"off for device_type {kind!r} (outputs in "
                            f"{sorted({str(e[1]) for e in linear if not e[2]})[0]}): enter "
                            "torch.autocast(device_type, dtype=dtype) around the forward pass "
                            "(torch.cuda.amp.autocast is deprecated and does nothing for CPU tensors)")
            wrong = [e[1] for e in linear if e[1] != dtype]
            if wrong:
                checks.fail(f"{what}: Linear layers returned {wrong[0]} under autocast, expected "
                            f"{dtype}: pass dtype=dtype to torch.autocast")
            if not all(e[2] for e in loss):
                checks.fail(f"{what}: loss_fn was called outside the autocast region: compute the "
                            "loss inside `with torch.autocast(...)` too")


@points(3)
@hint("zero the gradients every step (optimizer.zero_grad()), and step once per batch")
def test_matches_reference_bfloat16(student, reference, rng, device):
    """bfloat16: parameters after 8 steps match a reference loop on the same seed"""
    batches = make_batches(rng, 8)
    s_losses, s_params, r_losses, r_params, before = train_both(
        student, reference, device, batches, dtype=torch.bfloat16, **setup(rng))
    what = "train_amp(..., dtype=torch.bfloat16), 8 steps of SGD with momentum"
    s_losses = check_loss_list(s_losses, len(batches), what=what)
    check_params(s_params, r_params, before, what=what + ", parameters after the last step")


@points(3)
@hint("float16: scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update(); "
      "zero the gradients every step")
def test_matches_reference_float16(student, reference, rng, device):
    """float16 with GradScaler: parameters after 8 steps match a reference loop on the same seed"""
    batches = make_batches(rng, 8)
    s_losses, s_params, r_losses, r_params, before = train_both(
        student, reference, device, batches, dtype=torch.float16, **setup(rng))
    what = "train_amp(..., dtype=torch.float16), 8 steps of SGD with momentum"
    s_losses = check_loss_list(s_losses, len(batches), what=what)
    check_params(s_params, r_params, before, what=what + ", parameters after the last step")


@points(3)
@hint("with float16: scaler.scale(loss).backward(); scaler.unscale_(optimizer); "
      "clip_grad_norm_(params, max_grad_norm); scaler.step(optimizer); scaler.update()")
def test_clipping_on_unscaled_gradients(student, reference, rng, device):
    """max_grad_norm clips the true (unscaled) gradients"""
    steps, lr, clip = 5, 0.1, 0.02
    for dtype in (torch.float16, torch.bfloat16):
        name = DTYPE_NAMES[dtype]
        what = f"train_amp(..., dtype=torch.{name}, max_grad_norm={clip})"
        batches = make_batches(rng, steps)
        s_losses, s_params, r_losses, r_params, before = train_both(
            student, reference, device, batches, dtype=dtype, clip=clip,
            **setup(rng, lr=lr, momentum=0.0))
        s_losses = check_loss_list(s_losses, steps, what=what)
        for k in r_params:
            checks.assert_finite(s_params[k], what=f"{what}: parameter {k!r}")
        ratio = update_ratio(s_params, r_params, before)
        if ratio < 0.01:
            checks.fail(f"{what}: the parameters moved about {1 / max(ratio, 1e-12):.3g}x less "
                        "than expected: the gradients were clipped while still scaled; call "
                        "scaler.unscale_(optimizer) before clip_grad_norm_")
        # Plain SGD moves each step by lr * (clipped gradient): at most lr * max_grad_norm.
        moved = float(flat(s_params, list(r_params), before).norm())
        if moved > steps * lr * clip * 1.01:
            checks.fail(f"{what}: the gradients were not clipped to max_grad_norm (the parameters "
                        f"moved {moved / (steps * lr * clip):.3g}x farther than {steps} clipped "
                        "SGD steps can)")
        check_params(s_params, r_params, before, what=what + ", parameters after the last step")


@points(4)
@hint("float16: let scaler.step(optimizer) decide (it skips non-finite steps); bfloat16: check "
      "that every p.grad is finite and only then call optimizer.step()")
def test_nonfinite_batch_skipped(student, reference, rng, device):
    """A batch with inf/NaN is skipped without touching the parameters; training continues"""
    # bad = 3 of 5: an extra momentum step (zeroed gradients) moves the weights by >= 17% of the
    # whole update (measured over 30 seeds), and one good step after it shows training continues.
    steps, bad = 5, 3
    for dtype in (torch.float16, torch.bfloat16):
        name = DTYPE_NAMES[dtype]
        what = f"train_amp(..., dtype=torch.{name}) with inf/NaN in batch {bad} of {steps}"
        batches = make_batches(rng, steps, bad=bad)
        s_losses, s_params, r_losses, r_params, before = train_both(
            student, reference, device, batches, dtype=dtype, **setup(rng))
        s_losses = check_loss_list(s_losses, steps, what=what)
        for k in r_params:
            if not torch.isfinite(s_params[k]).all():
                checks.fail(f"{what}: parameter {k!r} contains NaN or inf afterwards ({name}): the "
                            "step on the non-finite batch must be skipped, not taken")
        try:
            check_params(s_params, r_params, before, what=what + ", parameters after the last step")
        except checks.Failure as e:
            checks.fail(f"{e}. They should equal a run in which the step on the non-finite batch "
                        "was skipped (no optimizer.step(): parameters and momentum untouched) "
                        "and all other steps were taken")
        check_losses_match(s_losses, r_losses, what=what, values=False)


@points(3)
@hint("small float16 gradients underflow to zero: backward on scaler.scale(loss) "
      "(torch.amp.GradScaler), which scales them into float16's range")
def test_float16_small_loss_no_underflow(student, reference, rng, device):
    """float16: a loss of order 1e-6 still trains (GradScaler prevents underflow)"""
    steps, loss_scale = 5, 2.0 ** -20
    what = "train_amp(..., dtype=torch.float16) with a loss of order 1e-6"
    batches = make_batches(rng, steps)
    s_losses, s_params, r_losses, r_params, before = train_both(
        student, reference, device, batches, dtype=torch.float16,
        **setup(rng, lr=0.05 / loss_scale, momentum=0.0, loss_scale=loss_scale))
    s_losses = check_loss_list(s_losses, steps, what=what)
    for k in r_params:
        checks.assert_finite(s_params[k], what=f"{what}: parameter {k!r}")
    ratio = update_ratio(s_params, r_params, before)
    if ratio < 0.5:
        how = "not at all" if ratio == 0 else f"only {ratio:.2g}x as far as expected"
        checks.fail(f"{what}: the parameters moved {how}: the float16 gradients underflowed to "
                    "zero; use torch.amp.GradScaler")
    check_params(s_params, r_params, before, what=what + ", parameters after the last step")


@points(2)
def test_losses_fall(student, rng, device):
    """Losses fall on a learnable regression task (60 float16 steps, Adam)"""
    steps = 60
    teacher = checks.randn(rng, IN, OUT, scale=1.0 / math.sqrt(IN))
    batches = make_batches(rng, steps, teacher=teacher)
    held_x = checks.randn(rng, 256, IN, dtype=torch.float64)
    held_y = torch.tanh(held_x @ teacher.double())
    kind = torch.device(device).type
    model, loss_fn, optimizer = student.probe(build_setup, device=device,
                                              **setup(rng, lr=3e-3, adam=True))
    start = model.state_dict()
    losses = student.train_amp(model, loss_fn, [(x.to(device), y.to(device)) for x, y in batches],
                               optimizer, device_type=kind, dtype=torch.float16)
    what = "train_amp(..., dtype=torch.float16) on a learnable task"
    losses = check_loss_list(losses, steps, what=what)
    if not all(math.isfinite(v) for v in losses):
        checks.fail(f"{what}: some returned losses are inf or NaN")
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    if not last < 0.5 * first:
        checks.fail(f"{what}: the returned losses did not fall (the last 10 average "
                    f"{last / first:.2f}x the first 10)")
    end = model.state_dict()
    err0 = float(((mlp_forward(start, held_x) - held_y) ** 2).mean())
    err1 = float(((mlp_forward(end, held_x) - held_y) ** 2).mean())
    if not err1 < 0.5 * err0:
        checks.fail(f"{what}: the trained model is not better on held-out data (mean squared "
                    f"error {err1 / err0:.2f}x that of the initial model)")


# ---- GPU only: never run on a machine without CUDA ------------------------------------------------
# Peak memory is measured inside the student's worker (torch.cuda.max_memory_allocated), which the
# submission could patch; the engine has no trusted peak-memory measurement yet.

def gpu_runner(seed, width, depth, steps, amp):  # GPU-only probe
    """A closure training a matmul-heavy MLP for `steps` steps on one batch (float16 AMP or fp32).

    Both arms sync once per step (float(loss); the scaler's inf check), so the float32 loop is a
    fair baseline; TF32 is off in the workers."""
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(width, 16)).cuda()  # narrow head: cheap loss
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

    def run(x, y):
        if amp:
            return submission.train_amp(model, F.mse_loss, [(x, y)] * steps, optimizer,
                                        device_type="cuda", dtype=torch.float16)
        losses = []
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        return losses
    return run


def gpu_peak_memory(seed, width, depth, batch, steps, amp):  # GPU-only probe
    """Peak bytes allocated above the model, optimizer state and data during `steps` steps."""
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(width, 16)).cuda()  # narrow head: cheap loss
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.randn(batch, width, device="cuda")
    y = torch.randn(batch, 16, device="cuda")

    def run():
        if amp:
            submission.train_amp(model, F.mse_loss, [(x, y)] * steps, optimizer,
                                 device_type="cuda", dtype=torch.float16)
            return
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.mse_loss(model(x), y).backward()
            optimizer.step()

    run()  # warm-up: cuBLAS workspaces
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


@checks.gpu
@points(2)
@hint("run the forward and the loss under torch.autocast('cuda', dtype=torch.float16) so the "
      "matmuls use tensor cores; avoid extra host syncs beyond one per step")
def test_gpu_float16_faster(student, reference, rng, device, exercise, note):  # GPU-only
    """GPU: float16 train_amp takes at most 1/1.3 of a float32 loop's time"""
    s = exercise.settings
    width, depth, batch, steps = s["gpu_width"], s["gpu_depth"], s["gpu_batch"], s["gpu_steps"]
    seed = new_seed(rng)
    amp_run = student.probe(gpu_runner, seed, width, depth, steps, True)
    fp32_run = reference.probe(gpu_runner, seed, width, depth, steps, False)
    result = checks.measure_speed(
        amp_run, fp32_run,
        lambda i: (checks.randn(rng, batch, width).to(device), checks.randn(rng, batch, 16).to(device)),
        repeats=5, warmup=1, device=device)
    if result.mismatched_repeats:
        checks.fail("train_amp did not return one loss per batch in the timed runs")
    summary = (f"median {result.student_median * 1e3:.2f} ms vs float32 loop "
               f"{result.reference_median * 1e3:.2f} ms: {result.ratio:.2f}x "
               f"(budget {exercise.speed_budget:g}x)")
    if result.ratio > exercise.speed_budget:
        checks.fail(f"float16 train_amp is too slow: {summary}")
    note(summary)


@checks.gpu
@points(1)
@hint("activations saved for backward are float16 under autocast; do not keep float32 copies")
def test_gpu_float16_lower_peak_memory(student, reference, rng, device, exercise, note):  # GPU-only
    """GPU: float16 train_amp's peak memory is at most 0.9x a float32 loop's"""
    s = exercise.settings
    args = (new_seed(rng), s["gpu_width"], s["gpu_depth"], s["gpu_memory_batch"], 2)
    amp_peak = student.probe(gpu_peak_memory, *args, True)
    fp32_peak = reference.probe(gpu_peak_memory, *args, False)
    if not isinstance(amp_peak, int):
        checks.fail("the peak-memory probe did not return a number")
    ratio = amp_peak / max(fp32_peak, 1)
    summary = (f"peak {amp_peak / 2**20:.0f} MiB vs float32 loop {fp32_peak / 2**20:.0f} MiB: "
               f"{ratio:.2f}x (limit {s['peak_memory_ratio']:g}x)")
    if ratio > s["peak_memory_ratio"]:
        checks.fail(f"float16 train_amp does not save memory: {summary}")
    note(summary)
