"""Mutant: reaches F.batch_norm through a pickle GLOBAL built from strings at run time,
which no static check can see; the ATen trace does.

expect-fail: test_no_builtin_batch_norm
expect-message: aten.native_batch_norm
"""
import pickle

import torch
import torch.nn.functional as F
from torch import nn

_norm = pickle.loads(("ctorch.nn.functional\nbatch" + "_norm\n.").encode())


class MyBatchNorm2d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
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
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError("expected 4D input")
        use_batch = self.training or not self.track_running_stats
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return _norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                     use_batch, factor, self.eps)
