"""Correct: the newer style (forward without ctx + setup_context), sigma(x) = exp(-softplus(-x))
computed in float32 for the half types and rounded back once; the input is saved and the
derivative recomputed without overflow as e / (1 + e)**2 with e = exp(-|x|)."""
import torch
import torch.nn.functional as F


def _wide(x):
    return x.float() if x.element_size() < 4 else x


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return torch.exp(-F.softplus(-_wide(x))).to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad_output):
        x, = ctx.saved_tensors
        e = torch.exp(-_wide(x).abs())
        return (grad_output * (e / (1 + e) ** 2)).to(x.dtype)


my_sigmoid = MySigmoid.apply
