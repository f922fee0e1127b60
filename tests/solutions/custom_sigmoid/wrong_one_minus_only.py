"""Mutant: derivative written as (1 - s), the factor s forgotten.

expect-fail: test_backward_matches, test_gradcheck_float64
expect-message: grad_output * (1 - s)
"""
import torch


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        e = torch.exp(-x.abs())
        out = torch.where(x >= 0, 1 / (1 + e), e / (1 + e))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        s, = ctx.saved_tensors
        return grad_output * (1 - s)


def my_sigmoid(x):
    return MySigmoid.apply(x)
