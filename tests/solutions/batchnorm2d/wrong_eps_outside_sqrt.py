"""Mutant: eps added outside the square root.

expect-fail: test_train_forward
expect-message: outside the square root
"""
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

        # Learnable parameters
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.weight = None
            self.bias = None

        # Running statistics (not trainable)
        if track_running_stats:
            self.register_buffer('running_mean', torch.zeros(num_features))
            self.register_buffer('running_var', torch.ones(num_features))
            self.register_buffer('num_batches_tracked', torch.tensor(0))
        else:
            self.running_mean = None
            self.running_var = None
            self.num_batches_tracked = None

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError("expected 4D input (got {}D input)".format(x.ndim))

        if self.training or not self.track_running_stats:
            # Use batch statistics
            count = x.shape[0] * x.shape[2] * x.shape[3]
            if count < 2:
                raise ValueError("Expected more than 1 value per channel when training")
            batch_mean = x.mean(dim=(0, 2, 3), keepdim=True)
            batch_var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)

            # Normalize
            x_norm = (x - batch_mean) / (torch.sqrt(batch_var) + self.eps)

            # Update running statistics (exponential moving average)
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked += 1
                    if self.momentum is None:
                        m = 1.0 / self.num_batches_tracked.item()
                    else:
                        m = self.momentum
                    unbiased_var = x.var(dim=(0, 2, 3), unbiased=True)
                    self.running_mean = (1 - m) * self.running_mean + m * batch_mean.flatten()
                    self.running_var = (1 - m) * self.running_var + m * unbiased_var
        else:
            # Eval mode: use running statistics
            mean = self.running_mean.view(1, -1, 1, 1)
            var = self.running_var.view(1, -1, 1, 1)
            x_norm = (x - mean) / torch.sqrt(var + self.eps)

        # Scale and shift
        if self.affine:
            return self.weight.view(1, -1, 1, 1) * x_norm + self.bias.view(1, -1, 1, 1)
        return x_norm
