"""Correct: exercise 8.6's residual U-Net: residual double-conv blocks (1x1 projection
shortcut), stride-2 max pooling via nn.MaxPool2d, nearest upsampling + 1x1 conv,
ValueError for sizes not divisible by 2**depth."""
import torch
import torch.nn as nn


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class UNet(nn.Module):
    def __init__(self, in_channels=1, out_channels=1, base_channels=16, depth=3):
        super().__init__()
        self.depth = depth
        widths = [base_channels << i for i in range(depth + 1)]
        self.enc = nn.ModuleList()
        cin = in_channels
        for w in widths[:-1]:
            self.enc.append(ResBlock(cin, w))
            cin = w
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bottleneck = ResBlock(widths[-2], widths[-1])
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(depth - 1, -1, -1):
            self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                         nn.Conv2d(widths[i + 1], widths[i], 1)))
            self.dec.append(ResBlock(2 * widths[i], widths[i]))
        self.final = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        k = 2 ** self.depth
        if h % k or w % k:
            raise ValueError(f"UNet(depth={self.depth}) needs H and W divisible by {k}; got {h}x{w}")
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.final(x)
