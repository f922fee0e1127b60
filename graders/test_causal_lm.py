"""Grader for causal_lm (notes 003, exercise 11.5; causal masking, section 11.4.7).

Every model is built inside the student's worker by the ``build_model`` probe,
seeded from the run's secret seed, and stays there; the judge calls it on
inputs drawn from ``rng`` and judges the logits it gets back.  Generation is
judged against the model's *own* logits (recomputed here step by step), so no
reference model is needed; the learning test trains the student's model in its
worker and computes the held-out loss here.
"""
import math

import torch

from graders import checks
from graders.checks import hint, points

SMALL = dict(d_model=32, n_heads=4, n_layers=2, max_len=32)   # the small model of most tests
LOGIT_TOL = 1e-4        # a generated token may lose to the argmax / k-th logit by this much
CAUSAL_TOL = dict(rtol=1e-5, atol=1e-5)   # logits at <= t must not move (float32 rounding)
CONTEXT_MIN_CHANGE = 1e-4   # logits at t must move at least this much when tokens < t change
SAMPLES = 4000          # one-step samples of the distribution tests
MAX_TV = 0.08           # total variation allowed between sampled and softmax frequencies
AUTOCAST_TOL = 0.25     # max |low-precision logits - float32 logits|: catches garbage only


# ---- probes (run inside the student's worker; their source is visible there) ----------

def build_model(seed, vocab_size, config, device):
    torch.manual_seed(seed)
    return submission.CausalLM(vocab_size, **config).to(device)  # noqa: F821 (probe global)


def train_model(model, data, steps, batch_size, lr, seed):
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, data.shape[0], (batch_size,), device=data.device)
        batch = data[rows]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),  # noqa: F821
                               batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    model.eval()
    return losses


def sample_tokens(model, idx, max_new_tokens, seed, temperature, top_k):
    torch.manual_seed(seed)
    return submission.generate(model, idx, max_new_tokens,  # noqa: F821
                               temperature=temperature, top_k=top_k)


def forward_autocast(model, idx, device_type, dtype):
    with torch.autocast(device_type, dtype=dtype):
        return model(idx)


def observe_generate(model, idx, max_new_tokens):
    """Generate greedily while forward hooks on every submodule record grad mode and training flag."""
    seen = {"calls": 0, "grad_enabled": 0, "training": 0}

    def hook(module, args, output):
        seen["calls"] += 1
        seen["grad_enabled"] += int(torch.is_grad_enabled())
        seen["training"] += int(module.training)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.enable_grad():
            out = submission.generate(model, idx, max_new_tokens, temperature=0.0)  # noqa: F821
    finally:
        for h in handles:
            h.remove()
    return out, seen, bool(model.training)


# ---- judge-side helpers ------------------------------------------------------------------

def new_seed(rng) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=rng))


def make_model(student, rng, device, vocab, **config):
    return student.probe(build_model, new_seed(rng), vocab, dict(SMALL, **config), device)


def tokens(rng, vocab, *shape):
    return torch.randint(0, vocab, shape, generator=rng)


def logits_of(model, idx, device, vocab, *, what):
    out = model(idx.to(device))
    checks.expect_tensor(out, what=what, shape=(*idx.shape, vocab), dtype=torch.float32, device=device)
    checks.assert_finite(out, what=what)
    return out.cpu()


def expect_generated(out, prompt, n_new, device, *, what):
    B, T = prompt.shape
    checks.expect_tensor(out, what=what, shape=(B, T + n_new), dtype=torch.int64, device=device)
    out = out.cpu()
    if not torch.equal(out[:, :T], prompt):
        checks.fail(f"{what}: the first {T} columns are not the prompt")
    return out


def step_logits(model, out, prompt_len, max_len, device, vocab, *, what):
    """The model's last-position logits before each generated token (contexts cropped to max_len)."""
    contexts = [[out[:, :prompt_len + i][:, -max_len:].to(device)]
                for i in range(out.shape[1] - prompt_len)]
    results = model.call_many(contexts)
    zs = []
    for (ctx,), z in zip(contexts, results):
        checks.expect_tensor(z, what=what, shape=(*ctx.shape, vocab))
        zs.append(z[:, -1].detach().cpu().double())
    return torch.stack(zs, dim=1)          # (B, steps, vocab)


def assert_greedy(out, z, prompt_len, *, what):
    chosen = out[:, prompt_len:]
    got = z.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
    bad = got < z.max(dim=-1).values - LOGIT_TOL
    if bad.any():
        b, i = (int(v) for v in bad.nonzero()[0])
        checks.fail(f"{what}: {int(bad.sum())} of {bad.numel()} generated tokens are not the argmax of "
                    f"the model's logits at that step (first: sequence {b}, new token {i})")


def assert_in_top_k(out, z, prompt_len, k, *, what):
    chosen = out[:, prompt_len:]
    got = z.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
    kth = torch.topk(z, k, dim=-1).values[..., -1]
    bad = got < kth - LOGIT_TOL
    if bad.any():
        b, i = (int(v) for v in bad.nonzero()[0])
        checks.fail(f"{what}: {int(bad.sum())} of {bad.numel()} sampled tokens are outside the model's "
                    f"top {k} at that step (first: sequence {b}, new token {i})")


def total_variation(samples, probs):
    freq = torch.bincount(samples, minlength=probs.numel()).double() / samples.numel()
    return 0.5 * float((freq - probs).abs().sum())


def lag_corpus(n, length, vocab, lag, perm, rng):
    """Sequences whose token t is perm[token t - lag]; the first ``lag`` tokens are random."""
    x = torch.empty(n, length, dtype=torch.int64)
    x[:, :lag] = tokens(rng, vocab, n, lag)
    for t in range(lag, length):
        x[:, t] = perm[x[:, t - lag]]
    return x


# ---- tests --------------------------------------------------------------------------------

@points(2)
def test_forward_shapes(student, rng, device, exercise):
    """forward: (B, T) -> float32 logits (B, T, vocab_size)"""
    V = exercise.settings["vocab"]
    model = make_model(student, rng, device, V)
    model.eval()
    for B, T in ((3, 10), (1, 1), (2, SMALL["max_len"])):
        logits_of(model, tokens(rng, V, B, T), device, V, what=f"model(idx) for idx of shape ({B}, {T})")
    big = student.probe(build_model, new_seed(rng), 40, {}, device)   # the default sizes
    big.eval()
    logits_of(big, tokens(rng, 40, 2, 128), device, 40,
              what="CausalLM(40)(idx) with the default sizes for idx of shape (2, 128)")


@points(1)
@hint("check idx.shape[1] against max_len at the top of forward and raise ValueError")
def test_too_long_raises(student, rng, device, exercise):
    """forward raises ValueError when T > max_len"""
    V = exercise.settings["vocab"]
    model = make_model(student, rng, device, V, max_len=12)
    logits_of(model, tokens(rng, V, 2, 12), device, V, what="model(idx) for T = max_len = 12")
    checks.assert_raises("ValueError", model, tokens(rng, V, 2, 13).to(device),
                         what="model(idx) for T = 13 > max_len = 12")


@points(4)
@hint("mask the scores of keys after the query (j > i) with -inf *before* the softmax; the "
      "lower triangle including the diagonal (torch.tril) is what a query may attend to")
def test_causal(student, rng, device, exercise):
    """Changing tokens after t never changes the logits at positions <= t"""
    V = exercise.settings["vocab"]
    model = make_model(student, rng, device, V)
    model.eval()
    T = 20
    base = tokens(rng, V, T - 1, T)
    changed = base.clone()
    for t in range(T - 1):   # row t is changed at every position after t
        changed[t, t + 1:] = (base[t, t + 1:] + tokens(rng, V - 1, T - 1 - t) + 1) % V
    a = logits_of(model, base, device, V, what="model(idx)")
    b = logits_of(model, changed, device, V, what="model(idx)")
    keep = torch.ones(T - 1, T, dtype=torch.bool).tril()        # positions <= t of row t
    moved = ((a - b).abs() > CAUSAL_TOL["atol"] + CAUSAL_TOL["rtol"] * a.abs()).any(-1) & keep
    if moved.any():
        rows, cols = moved.nonzero().T
        t = int(rows.min())
        checks.fail(f"the model sees the future: changing the tokens after position t changed the "
                    f"logits at positions <= t for {int(moved.any(-1).sum())} of {T - 1} values of t "
                    f"(first at t = {t}, position {int(cols[rows == t].min())})")


@points(2)
@hint("every position must attend to itself and to all earlier positions: a mask that keeps only "
      "the diagonal, or keeps the future instead of the past, ignores the context")
def test_uses_past_tokens(student, rng, device, exercise):
    """The logits at t change when the tokens before t change"""
    V = exercise.settings["vocab"]
    model = make_model(student, rng, device, V)
    model.eval()
    T = 16
    base = tokens(rng, V, T - 1, T)
    changed = base.clone()
    for t in range(1, T):    # row t - 1: every token before position t changed
        changed[t - 1, :t] = (base[t - 1, :t] + tokens(rng, V - 1, t) + 1) % V
    a = logits_of(model, base, device, V, what="model(idx)")
    b = logits_of(model, changed, device, V, what="model(idx)")
    rows = torch.arange(T - 1)
    change = (a[rows, rows + 1] - b[rows, rows + 1]).abs().amax(-1)
    still = change <= CONTEXT_MIN_CHANGE
    if still.any():
        checks.fail(f"the model ignores its context: changing every token before position t left the "
                    f"logits at t unchanged for {int(still.sum())} of {T - 1} values of t "
                    f"(first at t = {int(still.nonzero()[0]) + 1})")


@points(2)
@hint("with PyTorch's default initialization the logits start small; scaling them up (e.g. "
      "tying the head to an N(0, 1) embedding, or a large init) makes the first loss far above ln V")
def test_initial_loss(student, rng, device, exercise):
    """Initial loss on random tokens is within 1 nat of ln V"""
    limit = exercise.settings["initial_loss_nats"]
    for V, config, label in ((32, {}, "CausalLM(32) with the default sizes"),
                             (exercise.settings["vocab"], SMALL, "a small CausalLM")):
        model = student.probe(build_model, new_seed(rng), V, config, device)
        model.eval()
        idx = tokens(rng, V, 8, 32)
        logits = logits_of(model, idx, device, V, what=f"{label}: model(idx)")
        loss = float(torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, V).double(), idx[:, 1:].reshape(-1)))
        if not abs(loss - math.log(V)) <= limit:
            checks.fail(f"{label}: the initial cross-entropy on random tokens is {loss:.2f} nats, more "
                        f"than {limit:g} nat away from ln {V} = {math.log(V):.2f}")


@points(4)
@hint("the next token is a fixed function of the token a few positions back: the model needs "
      "position information (position embeddings added to the token embeddings) and attention "
      "to earlier positions")
def test_learns_synthetic_corpus(student, rng, device, exercise, note):
    """Learns a synthetic corpus: held-out loss far below ln V after a short training"""
    s = exercise.settings
    V, steps, lr, limit = s["vocab"], s["train_steps"], s["train_lr"], s["heldout_loss"]
    lag = int(torch.randint(4, 7, (1,), generator=rng))
    perm = torch.randperm(V, generator=rng)
    length = 25                                   # the model sees 24 tokens
    train = lag_corpus(512, length, V, lag, perm, rng)
    held = lag_corpus(128, length, V, lag, perm, rng)
    model = make_model(student, rng, device, V)
    losses = student.probe(train_model, model, train.to(device), steps, 32, lr, new_seed(rng))
    if not (isinstance(losses, list) and len(losses) == steps
            and all(isinstance(v, float) and math.isfinite(v) for v in losses)):
        checks.fail("the training loss became NaN or infinite")
    logits = logits_of(model, held[:, :-1], device, V, what="the trained model(idx)")
    per_token = torch.nn.functional.cross_entropy(logits.double().transpose(1, 2), held[:, 1:],
                                                  reduction="none")
    loss = float(per_token[:, lag - 1:].mean())   # targets at positions >= lag are predictable
    if not loss < limit:
        checks.fail(f"after {steps} Adam steps the held-out loss at the predictable positions is "
                    f"{loss:.3f} nats; it should be below {limit:g} (ln {V} = {math.log(V):.2f} is "
                    "chance level)")
    note(f"held-out loss after {steps} steps: {loss:.3f} nats")


@points(3)
@hint("temperature 0 means argmax of the last position's logits, without dividing by the "
      "temperature (z / 0 is inf or NaN)")
def test_greedy_generation(student, rng, device, exercise):
    """temperature=0: (B, T + n) tokens, each the argmax of the model's own logits"""
    V = exercise.settings["vocab"]
    model = make_model(student, rng, device, V)
    model.eval()
    prompt = tokens(rng, V, 5, 7)
    what = "generate(model, idx, 8, temperature=0.0)"
    out = student.generate(model, prompt.to(device), 8, temperature=0.0)
    out = expect_generated(out, prompt, 8, device, what=what)
    z = step_logits(model, out, 7, SMALL["max_len"], device, V, what="model(idx)")
    assert_greedy(out, z, 7, what=what)
    out1 = student.generate(model, prompt[:1].to(device), 1, temperature=0.0)
    expect_generated(out1, prompt[:1], 1, device, what="generate(model, idx, 1, temperature=0.0)")


@points(2)
@hint("feed the model idx[:, -max_len:] at every step: the prompt may be longer than max_len, "
      "and the sequence grows past it while generating")
def test_generate_crops_context(student, rng, device, exercise):
    """Generation crops the context to the last max_len tokens"""
    V = exercise.settings["vocab"]
    max_len = 12
    model = make_model(student, rng, device, V, max_len=max_len)
    model.eval()
    for T, n in ((17, 5), (9, 7)):
        prompt = tokens(rng, V, 4, T)
        what = f"generate(model, idx, {n}, temperature=0.0) for max_len = {max_len} and a prompt of {T}"
        out = expect_generated(student.generate(model, prompt.to(device), n, temperature=0.0),
                               prompt, n, device, what=what)
        z = step_logits(model, out, T, max_len, device, V, what="model(idx)")
        assert_greedy(out, z, T, what=what + " (judged on the last max_len tokens)")


@points(3)
@hint("keep only the top_k largest logits: set the others to -inf (not 0) before the softmax; "
      "top_k=1 must leave exactly one candidate")
def test_top_k_sampling(student, rng, device, exercise):
    """top_k: every sample is among the model's top k; kept tokens keep their relative odds"""
    V = exercise.settings["vocab"]
    model = make_model(student, rng, device, V)
    model.eval()
    k = 3
    prompt = tokens(rng, V, 6, 5)
    what = f"generate(model, idx, 10, temperature=1.0, top_k={k})"
    out = student.probe(sample_tokens, model, prompt.to(device), 10, new_seed(rng), 1.0, k)
    out = expect_generated(out, prompt, 10, device, what=what)
    z = step_logits(model, out, 5, SMALL["max_len"], device, V, what="model(idx)")
    assert_in_top_k(out, z, 5, k, what=what)

    what = "generate(model, idx, 6, temperature=1.0, top_k=1)"
    out = student.probe(sample_tokens, model, prompt.to(device), 6, new_seed(rng), 1.0, 1)
    out = expect_generated(out, prompt, 6, device, what=what)
    z = step_logits(model, out, 5, SMALL["max_len"], device, V, what="model(idx)")
    assert_greedy(out, z, 5, what=what + " (top_k=1 is greedy)")

    k = 4
    one = tokens(rng, V, 1, 8)
    what = f"{SAMPLES} one-token samples of generate(model, idx, 1, temperature=1.0, top_k={k})"
    out = student.probe(sample_tokens, model, one.expand(SAMPLES, 8).contiguous().to(device), 1,
                        new_seed(rng), 1.0, k)
    out = expect_generated(out, one.expand(SAMPLES, 8), 1, device, what=what)
    z = logits_of(model, one, device, V, what="model(idx)")[0, -1].double()
    kth = torch.topk(z, k).values[-1]
    outside = z[out[:, -1]] < kth - LOGIT_TOL
    if outside.any():
        checks.fail(f"{what}: {int(outside.sum())} samples are outside the model's top {k}")
    probs = z.masked_fill(z < kth, float("-inf")).softmax(-1)
    tv = total_variation(out[:, -1], probs)
    if tv > MAX_TV:
        checks.fail(f"{what}: the sample frequencies are off by a total variation distance of "
                    f"{tv:.3f} from softmax over the top {k} logits")


@points(2)
@hint("sample from softmax(z / temperature): dividing the logits, not the probabilities "
      "(softmax(z) / T is renormalised away by torch.multinomial)")
def test_temperature_sampling(student, rng, device, exercise):
    """Samples follow softmax(logits / temperature)"""
    V = exercise.settings["vocab"]
    model = make_model(student, rng, device, V)
    model.eval()
    one = tokens(rng, V, 1, 8)
    z = logits_of(model, one, device, V, what="model(idx)")[0, -1].double()
    for temperature in (0.25, 1.0):
        what = (f"{SAMPLES} one-token samples of generate(model, idx, 1, "
                f"temperature={temperature:g})")
        out = student.probe(sample_tokens, model, one.expand(SAMPLES, 8).contiguous().to(device), 1,
                            new_seed(rng), temperature, None)
        out = expect_generated(out, one.expand(SAMPLES, 8), 1, device, what=what)
        tv = total_variation(out[:, -1], (z / temperature).softmax(-1))
        if tv > MAX_TV:
            checks.fail(f"{what}: the sample frequencies are off by a total variation distance of "
                        f"{tv:.3f} from softmax(logits / temperature)")


@points(2)
@hint("remember model.training, call model.eval(), generate under torch.no_grad(), and call "
      "model.train(was_training) before returning (a try/finally is safest)")
def test_generate_mode_and_no_grad(student, rng, device, exercise):
    """generate runs in eval mode under no_grad and restores the model's mode"""
    V = exercise.settings["vocab"]
    model = make_model(student, rng, device, V, dropout=0.3)
    prompt = tokens(rng, V, 4, 6)
    what = "generate(model, idx, 6, temperature=0.0)"
    for mode in (True, False):
        model.train(mode)
        out, seen, after = student.probe(observe_generate, model, prompt.to(device), 6)
        out = expect_generated(out, prompt, 6, device, what=what)
        label = "in training mode" if mode else "in eval mode"
        if seen["calls"] == 0:
            checks.fail(f"{what} never called the model (or any of its submodules)")
        if seen["grad_enabled"]:
            checks.fail(f"{what} builds an autograd graph: the model ran with gradients enabled "
                        f"({seen['grad_enabled']} of {seen['calls']} module calls); use torch.no_grad()")
        if seen["training"]:
            checks.fail(f"{what} on a model {label} ran modules in training mode (dropout on) in "
                        f"{seen['training']} of {seen['calls']} module calls; switch to eval mode")
        if after is not mode:
            checks.fail(f"{what} on a model {label} left it in "
                        f"{'training' if after else 'eval'} mode: restore the mode it had")
        model.eval()
        z = step_logits(model, out, 6, SMALL["max_len"], device, V, what="model(idx)")
        assert_greedy(out, z, 6, what=f"{what} on a model with dropout {label}")


@points(2)
@hint("masked_fill(mask, -1e9) overflows float16 (largest value 65504): fill with float('-inf') "
      "or torch.finfo(scores.dtype).min")
def test_low_precision_autocast(student, rng, device, exercise):
    """No NaN or infinity under bfloat16 and float16 autocast"""
    V = exercise.settings["vocab"]
    model = make_model(student, rng, device, V)
    model.eval()
    idx = tokens(rng, V, 4, SMALL["max_len"])
    full = logits_of(model, idx, device, V, what="model(idx)")
    device_type = torch.device(device).type
    for dtype in (torch.bfloat16, torch.float16):
        what = f"model(idx) under torch.autocast({device_type!r}, dtype=torch.{str(dtype)[6:]})"
        low = student.probe(forward_autocast, model, idx.to(device), device_type, dtype)
        checks.expect_tensor(low, what=what, shape=(*idx.shape, V))
        checks.assert_finite(low, what=what)
        err = float((low.detach().cpu().double() - full.double()).abs().max())
        if err > AUTOCAST_TOL:
            checks.fail(f"{what} differs from the float32 logits by up to {err:.3g}, far more than "
                        "low-precision rounding explains")


@points(2)
@hint("write the attention yourself: q @ k.transpose(-2, -1) / sqrt(d_head), mask, softmax, @ v")
def test_no_builtin_attention(student, rng, device, exercise):
    """Runs no built-in attention operator (traced)"""
    V = exercise.settings["vocab"]
    banned = exercise.banned.aten
    model = make_model(student, rng, device, V, dropout=0.1)
    idx = tokens(rng, V, 2, 9).to(device)
    model.eval()
    out, ops = model.traced(idx)
    checks.expect_tensor(out, what="model(idx)", shape=(2, 9, V))
    checks.assert_ops_absent(ops, banned, what="the forward pass")
    model.train()
    grads = model.with_grad(torch.ones(2, 9, V), wrt=[], params=True, trace_ops=True)(idx)
    checks.assert_ops_absent(grads.ops, banned, what="the forward and backward pass in training mode")
    model.eval()
    out, ops = student.generate.traced(model, idx, 2, temperature=0.0)
    checks.expect_tensor(out, what="generate(model, idx, 2, temperature=0.0)", shape=(2, 11))
    checks.assert_ops_absent(ops, banned, what="generate")
