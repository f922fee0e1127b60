"""Public tests for amp_training.py: run ``python -m pytest public_tests.py`` next to it.

A few checks of the contract in the docstring, on CPU with a tiny model.  Passing them
does not mean full marks: the grader checks more (and, on a GPU, speed and memory).
"""
import copy
import math

import pytest
import torch
from torch import nn

from amp_training import train_amp

DTYPES = [torch.bfloat16, torch.float16]
mse = nn.functional.mse_loss


def tiny(seed=0, n_batches=4, scale=1.0):
    """A small MLP and batches of a learnable regression task (y = scale * sum of x).

    ``scale`` < 1 also scales the output layer down: the loss is then of order scale**2.
    """
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    if scale != 1.0:
        with torch.no_grad():
            model[2].weight.mul_(scale)
            model[2].bias.zero_()
    g = torch.Generator().manual_seed(seed + 1)
    xs = torch.randn(n_batches, 8, 6, generator=g)
    return model, [(x, scale * x.sum(dim=1, keepdim=True)) for x in xs]


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_returns_unscaled_losses_as_floats(dtype):
    model, batches = tiny()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        first = mse(model(batches[0][0]), batches[0][1]).item()   # before any step
    losses = train_amp(model, mse, batches, torch.optim.SGD(model.parameters(), lr=0.01),
                       device_type="cpu", dtype=dtype)
    assert isinstance(losses, list) and len(losses) == len(batches)
    assert all(type(v) is float for v in losses), "losses must be Python floats"
    assert math.isclose(losses[0], first, rel_tol=1e-2), (losses[0], first)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linear_layers_run_in_low_precision(dtype):
    model, batches = tiny(n_batches=1)
    seen = []
    for module in model.modules():
        if type(module) is nn.Linear:
            module.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    train_amp(model, mse, batches, torch.optim.SGD(model.parameters(), lr=0.01),
              device_type="cpu", dtype=dtype)
    assert seen and set(seen) == {dtype}, seen


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_losses_fall(dtype):
    model, batches = tiny(n_batches=40)
    losses = train_amp(model, mse, batches, torch.optim.Adam(model.parameters(), lr=0.01),
                       device_type="cpu", dtype=dtype)
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_clipping_limits_the_update(dtype):
    # Plain SGD with lr 1: the update is the (clipped) gradient, whose total norm is max_grad_norm.
    # (A small loss, so that float16's first step is not skipped for overflow.)
    model, batches = tiny(n_batches=1, scale=1e-2)
    before = flat(model)
    train_amp(model, mse, batches, torch.optim.SGD(model.parameters(), lr=1.0),
              device_type="cpu", dtype=dtype, max_grad_norm=1e-3)
    step = (flat(model) - before).norm().item()
    assert math.isclose(step, 1e-3, rel_tol=2e-2), f"update norm {step:.3g}, expected 1e-3"


def test_small_float16_loss_still_trains():
    # A loss of order 1e-5: without the GradScaler the first layer's float16 gradients
    # fall into float16's subnormal range (or to zero) and the update goes wrong.
    model, batches = tiny(n_batches=1, scale=1e-3)
    fp32 = copy.deepcopy(model)
    mse(fp32(batches[0][0]), batches[0][1]).backward()
    before = [p.detach().clone() for p in model.parameters()]
    lr = 100.0
    train_amp(model, mse, batches, torch.optim.SGD(model.parameters(), lr=lr),
              device_type="cpu", dtype=torch.float16)
    for (name, p), p0, q in zip(model.named_parameters(), before, fp32.parameters()):
        step, expected = p.detach() - p0, -lr * q.grad
        error = ((step - expected).norm() / expected.norm()).item()
        assert error < 0.05, f"{name}: the update is {error:.0%} off a float32 step"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_finite_batch_is_skipped(dtype):
    model, batches = tiny(n_batches=3)
    batches[1][0][0, 0] = float("nan")
    alone = copy.deepcopy(model)
    opt = torch.optim.SGD(alone.parameters(), lr=0.1, momentum=0.9)
    losses = train_amp(alone, mse, batches[1:2], opt, device_type="cpu", dtype=dtype)
    assert len(losses) == 1 and not math.isfinite(losses[0])
    assert torch.equal(flat(alone), flat(model)), "a step with NaN gradients changed the parameters"
    assert not opt.state, "a step with NaN gradients changed the optimizer state"

    losses = train_amp(model, mse, batches, torch.optim.SGD(model.parameters(), lr=0.1),
                       device_type="cpu", dtype=dtype)
    assert len(losses) == 3 and math.isfinite(losses[0]) and math.isfinite(losses[2])
    assert torch.isfinite(flat(model)).all(), "training did not go on after the bad batch"
