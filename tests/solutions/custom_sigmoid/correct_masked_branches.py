"""Correct: two branches written into a preallocated output with boolean masks (no where),
the output kept on ctx as an attribute (no save_for_backward), backward via addcmul."""
import torch


class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        pos = x >= 0
        neg = ~pos
        out[pos] = 1.0 / (1.0 + torch.exp(-x[pos]))
        z = torch.exp(x[neg])
        out[neg] = z / (1.0 + z)
        ctx.result = out.detach()
        return out

    @staticmethod
    def backward(ctx, grad_output):
        s = ctx.result
        return grad_output * torch.addcmul(s, s, s, value=-1.0)


def my_sigmoid(x):
    y = MySigmoid.apply(x)
    return y
