"""Correct: sigma(x) = (1 + tanh(x / 2)) / 2 (tanh never overflows); the derivative from the
saved input as (1 - tanh(x / 2)**2) / 4; everything in the input's own dtype."""
import torch


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        t = torch.tanh(x / 2)
        ctx.save_for_backward(t)
        return (1 + t) / 2

    @staticmethod
    def backward(ctx, grad_output):
        t, = ctx.saved_tensors
        return grad_output * (1 - t * t) / 4


def my_sigmoid(x):
    return MySigmoid.apply(x)
