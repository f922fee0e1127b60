"""Public tests for custom_sigmoid.py: run ``python -m pytest public_tests.py`` next to it.

A few checks of the contract in the docstrings, against PyTorch's own ``torch.sigmoid``
(used here, in the tests, only: your file may not use it).  Passing them does not mean
full marks: the grader checks more (see the docstrings).
"""
import pytest
import torch

from custom_sigmoid import MySigmoid, my_sigmoid

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def inputs(shape, dtype, scale=6.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def close_to_truth(out, x, ulps=2.0):
    # sigma lies in (0, 1): "an ulp or two" of values up to 1 is an absolute error of ~eps.
    truth = torch.sigmoid(x.double())
    err = (out.double() - truth).abs().max().item() if out.numel() else 0.0
    assert err <= ulps * torch.finfo(x.dtype).eps, f"{x.dtype}: max error {err:.3g}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_matches_sigmoid(dtype):
    x = inputs((4, 33), dtype)
    before = x.clone()
    out = my_sigmoid(x)
    assert out.shape == x.shape and out.dtype == dtype
    close_to_truth(out, x)
    assert torch.equal(x, before), "the input was modified"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_large_inputs_are_finite(dtype):
    x = torch.tensor([-1e4, -100.0, -30.0, -12.0, 0.0, 12.0, 30.0, 100.0, 1e4]).to(dtype)
    out = my_sigmoid(x)
    assert torch.isfinite(out).all()
    close_to_truth(out, x)


def test_odd_shapes():
    for x in (torch.tensor(0.5), torch.empty(0, 3), inputs((5, 6), torch.float32).t()):
        out = my_sigmoid(x)
        assert out.shape == x.shape
        close_to_truth(out, x)


def test_backward_uses_grad_output():
    x = inputs((3, 7), torch.float64, seed=1).requires_grad_()
    g = inputs((3, 7), torch.float64, seed=2)
    (grad,) = torch.autograd.grad(my_sigmoid(x), x, g)
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(grad, g * s * (1 - s), rtol=1e-12, atol=1e-15)


def test_backward_finite_at_extremes():
    x = torch.tensor([-1e4, -100.0, 0.0, 100.0, 1e4], requires_grad=True)
    my_sigmoid(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gradcheck_float64():
    x = inputs((4, 5), torch.float64, scale=3.0, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(MySigmoid.apply, (x,))


def test_is_a_custom_function():
    x = torch.randn(3, requires_grad=True)
    out = my_sigmoid(x)
    assert "MySigmoid" in type(out.grad_fn).__name__, "grad_fn is not MySigmoid's backward node"
