"""Reference solution for custom_sigmoid (hidden from students).

Forward: the numerically stable two-sided formula.  With e = exp(-|x|),
which never overflows,

    sigma(x) = 1 / (1 + e)   for x >= 0
    sigma(x) = e / (1 + e)   for x <  0.

float16 and bfloat16 inputs are computed in float32 and rounded back once (as
torch.sigmoid does), so the result is correctly rounded to about half an ulp.
The output is saved for backward: d sigma / dx = sigma * (1 - sigma), which
needs no exponential and cannot overflow.
"""
import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _stable_sigmoid(x: torch.Tensor) -> torch.Tensor:
    work = x.float() if x.dtype in _LOW_PRECISION else x
    e = torch.exp(-work.abs())
    numerator = torch.where(work >= 0, torch.ones_like(e), e)
    return (numerator / (1 + e)).to(x.dtype)


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = _stable_sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        return grad_output * out * (1 - out)


def my_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return MySigmoid.apply(x)
