"""Mutant: upcasts to float32 "for stability" and rounds back to the input's dtype: right dtype,
but float64 inputs lose their precision (forward and backward).

expect-fail: test_matches_sigmoid, test_backward_matches
expect-message: only float32 precision
"""
import torch


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        w = x.float()
        e = torch.exp(-w.abs())
        out = torch.where(w >= 0, 1 / (1 + e), e / (1 + e))
        ctx.save_for_backward(out)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        s, = ctx.saved_tensors
        return (grad_output.float() * s * (1 - s)).to(grad_output.dtype)


def my_sigmoid(x):
    return MySigmoid.apply(x)
