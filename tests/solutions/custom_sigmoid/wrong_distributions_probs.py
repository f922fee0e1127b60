"""Mutant: gets the sigmoid from torch.distributions (logits_to_probs), which runs aten.sigmoid:
no banned name in the source, caught by the operator trace.

expect-fail: test_no_sigmoid_ops
expect-message: aten.sigmoid
"""
import torch
from torch.distributions.utils import logits_to_probs


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = logits_to_probs(x, is_binary=True)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        s, = ctx.saved_tensors
        return grad_output * s * (1 - s)


def my_sigmoid(x):
    return MySigmoid.apply(x)
