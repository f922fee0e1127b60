"""Mutant: forward exp(x) / (1 + exp(x)): inf / inf = NaN for x > 88 (float32), x > 11 (float16).

expect-fail: test_extreme_inputs, test_low_precision
expect-message: NaN
"""
import torch


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        z = torch.exp(x)
        out = z / (1 + z)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        s, = ctx.saved_tensors
        return grad_output * s * (1 - s)


def my_sigmoid(x):
    return MySigmoid.apply(x)
