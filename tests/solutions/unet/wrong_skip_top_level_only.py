"""Mutant: concatenates the encoder features only at the top (full-resolution) level.

expect-fail: test_skip_connections
expect-message: level 1
"""
import torch
from torch import nn


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 16,
                 depth: int = 3):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("base_channels", base_channels), ("depth", depth)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.depth = depth
        chans = [base_channels * 2 ** i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        prev = in_channels
        for c in chans[:-1]:
            self.encoders.append(double_conv(prev, c))
            prev = c
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = double_conv(chans[-2], chans[-1])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2))
            self.decoders.append(double_conv(2 * chans[i] if i == 0 else chans[i], chans[i]))
        self.head = nn.Conv2d(chans[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        step = 2 ** self.depth
        h, w = x.shape[-2:]
        if h % step or w % step:
            raise ValueError(f"H and W must be divisible by 2**depth = {step}, got {h}x{w}")
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for level, (up, dec, skip) in enumerate(zip(self.ups, self.decoders, reversed(skips))):
            x = up(x)
            if level == self.depth - 1:  # only the full-resolution level gets its skip
                x = torch.cat([x, skip], dim=1)
            x = dec(x)
        return self.head(x)
