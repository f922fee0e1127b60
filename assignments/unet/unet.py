"""Exercises 7.5 / 8.6 / Challenge 3 -- a U-Net for image denoising.

Fill in ``UNet`` below.  Its docstrings are the whole contract: the grader
checks exactly what they say, by running your model (never by reading your
code).  Write it from scratch with ``torch.nn``; no downloads, no pretrained
weights.  (The notes' own U-Nets have bugs: a sigmoid output, 28x28 inputs
that come out 32x32, a "3 level" model with 2 poolings.  Do not copy them.)
"""
import torch
from torch import nn


class UNet(nn.Module):
    """A U-Net: an encoder, a bottleneck and a decoder joined by skip connections.

    Architecture (``c_i = base_channels * 2**i``):

      * Encoder: ``depth`` levels i = 0 .. depth-1.  Level i is a block of two
        3x3 convolutions (padding 1, so the size is kept), each followed by
        BatchNorm (``nn.BatchNorm2d`` or ``F.batch_norm``) and ReLU, with
        ``c_i`` output channels.  The block's output is kept for the skip
        connection, then downsampled 2x (max-pooling, or a stride-2 conv) on
        the way to the next level.
      * Bottleneck: the same double conv block at resolution H/2**depth,
        with ``c_depth`` channels.
      * Decoder: level by level back up (i = depth-1 .. 0): upsample 2x
        (``nn.ConvTranspose2d(kernel_size=2, stride=2)``, or ``nn.Upsample`` /
        ``F.interpolate`` followed by a conv), concatenate with ``torch.cat``
        along dim 1 (the channel dimension) with the encoder's level-i block
        output itself (the tensor the block returned, or a view of it; either
        order; no attention gating, nothing computed from it after the
        downsampling, no ``.detach()``), then a double conv block with
        ``c_i`` output channels.  There is a concatenation at every level.
      * Head: a final 1x1 conv to ``out_channels``.  No output activation
        (no sigmoid, tanh, ReLU, clamp): the output is unbounded, targets
        can be negative or above 1.

    Args:
        in_channels: channels of the input images (default 1).
        out_channels: channels of the output (default 1).
        base_channels: ``c_0``, the channels of the first level (default 16).
        depth: number of encoder levels = number of 2x downsamplings (default 3).

    Parameter count: within 0.5x-2x of the reference's for the same
    arguments.  The reference (convs without bias before BatchNorm,
    ConvTranspose2d(c_{i+1}, c_i, 2, stride=2) upsampling) has
        UNet()                                                      482,449
        UNet(base_channels=8)                                       121,033
        UNet(base_channels=8, depth=2)                               29,481
        UNet(in_channels=3, out_channels=2, base_channels=8, depth=2) 29,634
    parameters (the first and the last are graded).

    Every parameter must require grad and be used: a backward pass from the
    output gives every parameter a gradient (not None), and a nonzero one
    for every parameter whose name does not end in "bias" (no unused layer,
    nothing detached).  A conv bias directly followed by BatchNorm gets a
    gradient of almost exactly zero; that is fine.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 16,
                 depth: int = 3):
        super().__init__()
        raise NotImplementedError("UNet.__init__ is not implemented yet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) float32 -> (N, out_channels, H, W) float32.

        Requirements (all graded):
          * Works for any batch size N >= 1 and any H, W divisible by
            2**depth, square or not (e.g. 16x24 with depth 3).
          * Other sizes (e.g. 28x28 with depth 3) either work (output
            (N, out_channels, H, W), the same H and W as the input) or
            raise ``ValueError`` whose message contains the word
            "divisible" (e.g. "H and W must be divisible by 2**depth = 8").
            Any other error (say a RuntimeError from torch.cat) fails.
          * Skip connections: see the class docstring; checked by tracing
            the torch.cat calls your forward makes.
          * In eval mode (``model.eval()``) the output is deterministic and
            each sample's output does not depend on the rest of the batch
            (BatchNorm uses its running statistics; any dropout is off).
          * It learns: trained by the grader (Adam, MSE loss, a fixed number
            of steps, small batches, base_channels=8, depth=2) on synthetic
            noisy 16x16 images (piecewise-smooth shapes with values roughly
            in [-1.5, 2] plus Gaussian noise), the held-out PSNR of its
            eval-mode output must beat the noisy input's by at least 3.5 dB.
            (The reference gains 5-6 dB; a plain autoencoder without skips
            about 1.5 dB; a sigmoid output about 0.5 dB.)
          * Speed: one forward + backward pass in training mode takes at
            most 2x the reference's time (base_channels=8, depth=3, batch 32,
            16x16 images, one CPU thread).
        """
        raise NotImplementedError("UNet.forward is not implemented yet")
