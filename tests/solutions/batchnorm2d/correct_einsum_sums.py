"""Sums and counts written out with einsum; eval folds the statistics into scale/shift."""
import torch
import torch.nn as nn


class MyBatchNorm2d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features).fill_(1.0))
            self.bias = nn.Parameter(torch.empty(num_features).fill_(0.0))
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

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, input):
        if len(input.shape) != 4:
            raise ValueError("input must be 4-D (N, C, H, W)")
        n = input.shape[0] * input.shape[2] * input.shape[3]
        if self.training or self.running_mean is None:
            if n <= 1:
                raise ValueError("Expected more than 1 value per channel when training")
            mean = torch.einsum("nchw->c", input) / n
            d = input - mean[None, :, None, None]
            sq = torch.einsum("nchw,nchw->c", d, d)
            var = sq / n
            if self.training and self.running_mean is not None:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    if self.momentum is None:
                        a = 1.0 / float(self.num_batches_tracked)
                    else:
                        a = float(self.momentum)
                    self.running_mean.copy_(self.running_mean + a * (mean - self.running_mean))
                    self.running_var.copy_(self.running_var + a * (sq / (n - 1) - self.running_var))
        else:
            mean = self.running_mean
            var = self.running_var
        scale = 1.0 / torch.sqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale = scale * self.weight
            shift = shift * self.weight + self.bias
        return input * scale[None, :, None, None] + shift[None, :, None, None]
