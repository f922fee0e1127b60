"""Correct: the notes' style blocks (nn.Sequential, conv with bias=True before BatchNorm, inplace
ReLU), bilinear upsampling + 3x3 conv, skip first in the concatenation, and every input size
works (the upsampled map is interpolated to the skip's size)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_block(in_ch, out_ch):
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, in_channels=1, out_channels=1, base_channels=16, depth=3):
        super().__init__()
        ch = [base_channels * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([conv_block(in_channels if i == 0 else ch[i - 1], ch[i])
                                   for i in range(depth)])
        self.middle = conv_block(ch[depth - 1], ch[depth])
        self.reduce = nn.ModuleList([nn.Conv2d(ch[i + 1], ch[i], 3, padding=1) for i in range(depth)])
        self.up = nn.ModuleList([conv_block(2 * ch[i], ch[i]) for i in range(depth)])
        self.out = nn.Conv2d(ch[0], out_channels, kernel_size=1)

    def forward(self, x):
        feats = []
        for block in self.down:
            x = block(x)
            feats.append(x)
            x = F.max_pool2d(x, 2)
        x = self.middle(x)
        for i in reversed(range(len(self.up))):
            skip = feats[i]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.reduce[i](x)
            x = self.up[i](torch.cat((skip, x), 1))
        return self.out(x)
