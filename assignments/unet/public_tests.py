"""Public tests for unet.py: run ``python -m pytest public_tests.py`` next to it.

A few checks of the contract in the docstrings, on tiny models.  Passing them does not
mean full marks: the grader checks more (e.g. that the model learns to denoise).
"""
import pytest
import torch
from torch.overrides import TorchFunctionMode

from unet import UNet


def images(n, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g)


def test_shapes():
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2)
    out = model(images(2, 1, 16, 16))
    assert out.shape == (2, 1, 16, 16) and out.dtype == torch.float32
    model = UNet(in_channels=3, out_channels=2, base_channels=4, depth=3)
    assert model(images(1, 3, 16, 24)).shape == (1, 2, 16, 24)   # not square; N = 1


def test_size_not_divisible_works_or_says_so():
    model = UNet(base_channels=4, depth=3)
    try:
        out = model(images(1, 1, 28, 28))
    except ValueError as e:
        assert "divisible" in str(e)
    else:
        assert out.shape == (1, 1, 28, 28)


def test_parameter_count_in_range():
    count = sum(p.numel() for p in UNet().parameters())
    assert 0.5 * 482_449 <= count <= 2 * 482_449, count


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(1)
    model = UNet(base_channels=4, depth=2)
    model(images(2, 1, 8, 8)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.requires_grad and p.grad is not None, f"{name}: no gradient"
        if not name.endswith("bias"):
            assert p.grad.abs().sum() > 0, f"{name}: zero gradient"


class CountCat(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.cat, torch.concat, torch.concatenate):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("depth", [2, 3])
def test_a_concatenation_at_every_level(depth):
    model = UNet(base_channels=4, depth=depth)
    with CountCat() as mode:
        model(images(1, 1, 16, 16))
    assert mode.count >= depth, f"{mode.count} torch.cat calls for depth {depth}"


def test_eval_is_deterministic_and_per_sample():
    torch.manual_seed(2)
    model = UNet(base_channels=4, depth=2)
    for seed in range(2):   # a few training steps give BatchNorm running statistics
        model(images(4, 1, 8, 8, seed=seed))
    model.eval()
    x = images(3, 1, 8, 8, seed=9)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(model(x), out, rtol=0, atol=0)
        torch.testing.assert_close(model(x[1:2]), out[1:2], rtol=1e-5, atol=1e-6)
