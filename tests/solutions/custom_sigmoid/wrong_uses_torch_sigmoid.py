"""Mutant: forward calls torch.sigmoid (banned: every test fails).

expect-fail: test_matches_sigmoid, test_backward_matches, test_custom_function
expect-message: banned
"""
import torch


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = torch.sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        s, = ctx.saved_tensors
        return grad_output * s * (1 - s)


def my_sigmoid(x):
    return MySigmoid.apply(x)
