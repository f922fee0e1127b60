"""Mutant: computes in float32 for stability and forgets to cast back: float16, bfloat16 and
float64 inputs give float32 outputs.

expect-fail: test_shapes_and_dtypes, test_low_precision, test_matches_sigmoid
expect-message: dtype
"""
import torch


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = x.float()
        e = torch.exp(-x.abs())
        out = torch.where(x >= 0, 1 / (1 + e), e / (1 + e))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        s, = ctx.saved_tensors
        return grad_output * s * (1 - s)


def my_sigmoid(x):
    return MySigmoid.apply(x)
