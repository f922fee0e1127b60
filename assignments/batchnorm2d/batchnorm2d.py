"""Exercise 9.3 -- batch normalization from scratch: ``MyBatchNorm2d``.

Complete the class below so that it behaves like ``torch.nn.BatchNorm2d``
(notes 003 section 9.4.4, notes 004 part 1).  The docstrings are the whole
contract: the grader checks exactly what they say, by running your class and
``nn.BatchNorm2d`` side by side on random data (several training steps with
different batches, then evaluation).

Conventions (where the notes disagree, PyTorch's convention is the one graded):
    * Normalization uses the *biased* batch variance (divide by n), where
      n = N * H * W is the number of values per channel.
    * ``running_var`` tracks the *unbiased* batch variance (divide by n - 1).
    * ``momentum`` weights the *new* batch:
          running = (1 - momentum) * running + momentum * batch_statistic
      (so momentum=0.1 keeps 90 % of the old value; notes 004 writes the
      same average with lambda = 0.9 on the old value).
    * The parameters are called ``weight`` and ``bias`` (not gamma/beta).

Not allowed anywhere in your file (checked in the source and by tracing the
operators your code really runs): ``F.batch_norm``, ``torch.batch_norm``,
``torch.native_batch_norm`` and the other ``torch.*batch_norm*`` functions
(e.g. ``torch.batch_norm_update_stats``), ``nn.BatchNorm1d/2d/3d`` (and the
lazy/sync variants), ``F.instance_norm``, ``F.group_norm``, ``F.layer_norm``
(each computes batch norm on a reshaped tensor) and the corresponding modules
(``nn.InstanceNorm*``, ``nn.GroupNorm``, ``nn.LayerNorm``), nor the ATen
operators behind any of them.  Plain tensor operations (``mean``, ``var``,
``var_mean``, ``sqrt``, ``rsqrt``, sums, einsum, ...) are fine, and so is a
custom ``torch.autograd.Function``.
"""
import torch
from torch import nn


class MyBatchNorm2d(nn.Module):
    """Batch normalization over a 4-D input (N, C, H, W), like ``nn.BatchNorm2d``.

    For each channel c, with n = N * H * W values x of that channel in the batch:

        mean = sum(x) / n
        var  = sum((x - mean) ** 2) / n                   (biased)
        y    = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]

    Graded behaviour (all compared with ``nn.BatchNorm2d`` with the same
    arguments, weights and inputs, to the precision of the input's dtype, in
    float32 and in float64):

    * Training mode (``model.train()``, the default): normalize with the
      statistics of the current batch, per channel over dims (0, 2, 3).  If
      ``track_running_stats``, also update (without gradient)
          num_batches_tracked += 1
          running_mean = (1 - f) * running_mean + f * mean
          running_var  = (1 - f) * running_var  + f * var * n / (n - 1)
      where f = momentum, or, when ``momentum is None``, f = 1 / num_batches_tracked
      (after the increment), which makes the running statistics the
      cumulative (equal-weight) average of all batch statistics so far.
    * Evaluation mode (``model.eval()``): if ``track_running_stats``,
      normalize with ``running_mean`` and ``running_var`` instead, and change
      no buffer; the output for one sample does not depend on the rest of the
      batch.  With ``track_running_stats=False`` there are no running
      statistics and batch statistics are used in both modes.
    * The output has the input's shape, dtype and device.
    * Gradients with respect to the input, ``weight`` and ``bias`` match
      ``nn.BatchNorm2d`` in both modes.  In training mode the batch mean and
      variance depend on the input, and autograd must see that (do not
      detach them); the running statistics never take part in autograd.
    * ``ValueError`` for an input that is not 4-D (in either mode), and for
      computing batch statistics from one value per channel, i.e.
      N * H * W == 1, in training mode (or with ``track_running_stats=False``).
      N == 1 with H * W > 1 is fine and must not raise; in evaluation mode
      with running statistics any batch size is fine.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        """Set up parameters and buffers exactly as ``nn.BatchNorm2d`` does.

        Args:
            num_features: C, the number of channels.
            eps: added to the variance inside the square root.
            momentum: the weight of the new batch in the running averages, or
                None for the cumulative average (see the class docstring).
            affine: if True, learnable parameters ``weight`` (C,) initialised to
                ones and ``bias`` (C,) initialised to zeros (``nn.Parameter``s).
                If False, there are no parameters at all and ``self.weight``
                and ``self.bias`` are None.
            track_running_stats: if True, buffers (``register_buffer``)
                ``running_mean`` (C,) of zeros, ``running_var`` (C,) of ones and
                ``num_batches_tracked``, a 0-dim int64 (torch.long) tensor
                holding 0.  If False, ``self.running_mean``,
                ``self.running_var`` and ``self.num_batches_tracked`` are None.

        Because the names, shapes and dtypes match, ``state_dict()`` of your
        module loads into ``nn.BatchNorm2d`` (same arguments) with
        ``load_state_dict(..., strict=True)``, and the ``state_dict()`` of an
        ``nn.BatchNorm2d`` loads into your module; both then compute the same
        outputs.  Buffers follow ``model.double()`` / ``model.to(device)``.
        """
        super().__init__()
        raise NotImplementedError("MyBatchNorm2d.__init__ is not implemented yet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` (N, C, H, W); see the class docstring for the rules."""
        raise NotImplementedError("MyBatchNorm2d.forward is not implemented yet")
