"""Mutant: forward computes exp(-|x|) in place on x "to save memory": the result is right,
but the caller's x is overwritten.

expect-fail: test_shapes_and_dtypes
expect-message: modified its input
"""
import torch


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        positive = x >= 0
        e = x.abs_().neg_().exp_()
        out = torch.where(positive, 1 / (1 + e), e / (1 + e))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        s, = ctx.saved_tensors
        return grad_output * s * (1 - s)


def my_sigmoid(x):
    return MySigmoid.apply(x)
