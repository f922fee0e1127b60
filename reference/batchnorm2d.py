"""Reference for batchnorm2d (notes 003 exercise 9.3; notes 004 part 1).

Written fresh (the notes' classes use the unbiased variance to normalize, or
track the biased one, and name the parameters gamma/beta) and checked against
``nn.BatchNorm2d``: outputs, gradients and running statistics agree to
rounding in float32 and float64, in train and eval mode, for momentum=None,
affine=False and track_running_stats=False.
"""
import torch
from torch import nn


class MyBatchNorm2d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D input (N, C, H, W), got {x.dim()}-D")
        use_batch_stats = self.training or not self.track_running_stats
        shape = (1, -1, 1, 1)
        if use_batch_stats:
            n = x.numel() // x.shape[1]
            if n <= 1:
                raise ValueError("expected more than 1 value per channel when training")
            mean = x.mean(dim=(0, 2, 3))
            centred = x - mean.view(shape)
            var = centred.square().mean(dim=(0, 2, 3))
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked += 1
                    if self.momentum is None:
                        factor = 1.0 / float(self.num_batches_tracked)
                    else:
                        factor = self.momentum
                    self.running_mean.mul_(1 - factor).add_(factor * mean)
                    self.running_var.mul_(1 - factor).add_(factor * var * (n / (n - 1)))
            out = centred * torch.rsqrt(var + self.eps).view(shape)
        else:
            out = (x - self.running_mean.view(shape)) * torch.rsqrt(self.running_var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out
