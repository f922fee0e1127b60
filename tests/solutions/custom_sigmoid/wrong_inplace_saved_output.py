"""Mutant: backward "saves memory" by updating the saved output in place -- which is the tensor
the caller got from forward: my_sigmoid(x) no longer holds sigma(x) after backward.

expect-fail: test_backward_matches, test_backward_extreme
expect-message: in place
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
        return s.mul_(1 - s).mul_(grad_output)


def my_sigmoid(x):
    return MySigmoid.apply(x)
