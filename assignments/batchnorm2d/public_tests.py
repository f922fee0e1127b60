"""Public tests for batchnorm2d.py: run ``python -m pytest public_tests.py`` next to it.

A few checks of the contract in the docstrings, side by side with ``torch.nn.BatchNorm2d``.
Passing them does not mean full marks: the grader checks more (see the docstrings).
"""
import pytest
import torch
from torch import nn

from batchnorm2d import MyBatchNorm2d


def batch(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (3.0 * torch.randn(shape, generator=g, dtype=torch.float64) + 1.5).to(dtype)


def pair(c=3, dtype=torch.float64, **kwargs):
    """Our module and nn.BatchNorm2d with the same random affine parameters."""
    mine, theirs = MyBatchNorm2d(c, **kwargs).to(dtype), nn.BatchNorm2d(c, **kwargs).to(dtype)
    if theirs.affine:
        with torch.no_grad():
            for p_mine, p_theirs, seed in ((mine.weight, theirs.weight, 1), (mine.bias, theirs.bias, 2)):
                p_theirs.copy_(batch(c, dtype, seed))
                p_mine.copy_(p_theirs)
    return mine, theirs


def test_parameters_and_buffers():
    m = MyBatchNorm2d(4)
    assert isinstance(m.weight, nn.Parameter) and isinstance(m.bias, nn.Parameter)
    assert torch.equal(m.weight, torch.ones(4)) and torch.equal(m.bias, torch.zeros(4))
    assert torch.equal(m.running_mean, torch.zeros(4)) and torch.equal(m.running_var, torch.ones(4))
    assert m.num_batches_tracked.dtype == torch.long and m.num_batches_tracked.dim() == 0
    assert m.state_dict().keys() == nn.BatchNorm2d(4).state_dict().keys()
    nn.BatchNorm2d(4).load_state_dict(m.state_dict(), strict=True)
    bare = MyBatchNorm2d(4, affine=False, track_running_stats=False)
    assert bare.weight is None and bare.bias is None and bare.running_mean is None
    assert list(bare.parameters()) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_training_steps_then_eval_match_batchnorm2d(dtype):
    mine, theirs = pair(dtype=dtype)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for step in range(3):
        x = batch((4, 3, 5, 6), dtype, seed=10 + step)
        out = mine(x)
        assert out.shape == x.shape and out.dtype == dtype
        torch.testing.assert_close(out, theirs(x), **tol)
    torch.testing.assert_close(mine.running_mean, theirs.running_mean, **tol)
    torch.testing.assert_close(mine.running_var, theirs.running_var, **tol)
    assert mine.num_batches_tracked.item() == 3
    mine.eval(), theirs.eval()
    x = batch((2, 3, 5, 6), dtype, seed=20)
    torch.testing.assert_close(mine(x), theirs(x), **tol)
    assert mine.num_batches_tracked.item() == 3, "eval mode changed a buffer"


def test_momentum_none_is_cumulative_average():
    mine, theirs = pair(momentum=None)
    for step in range(3):
        x = batch((2, 3, 4, 4), seed=30 + step)
        mine(x), theirs(x)
    torch.testing.assert_close(mine.running_mean, theirs.running_mean)
    torch.testing.assert_close(mine.running_var, theirs.running_var)


def test_gradients_match():
    mine, theirs = pair()
    x = batch((3, 3, 4, 5), seed=40)
    g = batch((3, 3, 4, 5), seed=41)
    grads = []
    for m in (mine, theirs):
        xi = x.clone().requires_grad_()
        grads.append(torch.autograd.grad(m(xi), [xi, m.weight, m.bias], g))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_value_errors():
    m = MyBatchNorm2d(3)
    with pytest.raises(ValueError):
        m(torch.randn(2, 3, 4))
    with pytest.raises(ValueError):
        m(torch.randn(1, 3, 1, 1))        # one value per channel in training mode
    m(torch.randn(1, 3, 2, 2))            # N == 1 with H * W > 1 is fine
