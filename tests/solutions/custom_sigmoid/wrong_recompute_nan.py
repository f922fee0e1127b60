"""Mutant: the notes' "recompute from the input" route: backward = exp(-x) / (1 + exp(-x))**2,
which is inf / inf = NaN once exp(-x) overflows (x = -100 in float32, x = -1e4 in float64).

expect-fail: test_backward_extreme
expect-message: NaN
"""
import torch


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        e = torch.exp(-x.abs())
        return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))

    @staticmethod
    def backward(ctx, grad_output):
        x, = ctx.saved_tensors
        return grad_output * torch.exp(-x) / (1 + torch.exp(-x)) ** 2


def my_sigmoid(x):
    return MySigmoid.apply(x)
