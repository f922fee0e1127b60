"""A custom autograd.Function with hand-written backward, channels-first layout.

Forward flattens to (C, N*H*W); backward uses the closed-form batch-norm
gradient (train) or the affine map's gradient (running statistics).
"""
import torch
from torch import nn


class _BatchStatsNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, eps):
        c = x.shape[1]
        flat = x.transpose(0, 1).reshape(c, -1)
        var, mean = torch.var_mean(flat, dim=1, correction=0)
        inv_std = (var + eps).rsqrt()
        xhat = (flat - mean[:, None]) * inv_std[:, None]
        ctx.save_for_backward(xhat, inv_std)
        ctx.shape = x.shape
        out = xhat.reshape(c, x.shape[0], x.shape[2], x.shape[3]).transpose(0, 1)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad_out, grad_mean, grad_var):
        xhat, inv_std = ctx.saved_tensors
        n, c, h, w = ctx.shape
        g = grad_out.transpose(0, 1).reshape(c, -1)
        gx = inv_std[:, None] * (g - g.mean(dim=1, keepdim=True)
                                 - xhat * (g * xhat).mean(dim=1, keepdim=True))
        return gx.reshape(c, n, h, w).transpose(0, 1), None


class MyBatchNorm2d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(f"MyBatchNorm2d needs (N, C, H, W) input, got shape {tuple(x.shape)}")
        batch = self.training or not self.track_running_stats
        if batch:
            count = x.numel() // x.shape[1]
            if count == 1:
                raise ValueError("Expected more than 1 value per channel when training")
            y, mean, var = _BatchStatsNorm.apply(x, self.eps)
            if self.training and self.track_running_stats:
                self.num_batches_tracked.add_(1)
                f = 1 / int(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), f)
                self.running_var.lerp_(var.detach() * count / (count - 1), f)
        else:
            shift = self.running_mean[None, :, None, None]
            scale = (self.running_var + self.eps).rsqrt()[None, :, None, None]
            y = (x - shift) * scale
        if self.affine:
            y = torch.addcmul(self.bias[None, :, None, None], y, self.weight[None, :, None, None])
        return y
