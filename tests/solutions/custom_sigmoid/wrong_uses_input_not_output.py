"""Mutant: saves the input and applies the derivative formula to it: x * (1 - x) instead of s * (1 - s).

expect-fail: test_backward_matches, test_gradcheck_float64
expect-message: uses the input x
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
        return grad_output * x * (1 - x)


def my_sigmoid(x):
    return MySigmoid.apply(x)
