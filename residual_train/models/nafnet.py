"""NAFNet-style backbone (Chen et al., "Simple Baselines for Image Restoration", 2022):
LayerNorm, depth-wise conv, SimpleGate and simplified channel attention, no
non-linear activations; same interface as the U-Net, so sweeps can compare."""

from __future__ import annotations

import torch
from torch import nn

from data_gen.core.errors import InputError
from residual_train.models.base import ResidualNet


class LayerNorm2d(nn.Module):
    def __init__(self, c: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = (
            nn.Parameter(torch.ones(c)),
            nn.Parameter(torch.zeros(c)),
            eps,
        )

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class SimpleGate(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = LayerNorm2d(c), LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.conv3 = nn.Conv2d(c, c, 1)
        self.ffn1, self.ffn2 = nn.Conv2d(c, 2 * c, 1), nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        y = self.gate(self.dw(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca(y))
        x = x + self.beta * y
        y = self.ffn2(self.gate(self.ffn1(self.norm2(x))))
        return x + self.gamma * y


class NAFNet(ResidualNet):
    """``depth`` levels of ``blocks`` NAFBlocks each, ``middle`` blocks at the bottom."""

    def __init__(
        self,
        channels: int = 3,
        heads=("blur", "noise"),
        width: int = 16,
        depth: int = 3,
        blocks: int = 1,
        middle: int = 1,
        **options,
    ) -> None:
        # options: what every ResidualNet takes (sigma_map, deconv, ...; see models/base.py)
        super().__init__(channels, heads, **options)
        if width < 1 or depth < 0 or blocks < 1 or middle < 0:
            raise InputError(
                f"model.width = {width}, model.depth = {depth}, model.blocks = {blocks}, "
                f"model.middle = {middle}: each must be a positive integer"
            )
        self.levels, self.features = depth, width
        w = [width * 2**i for i in range(depth + 1)]
        self.stem = nn.Conv2d(self.in_channels, w[0], 3, padding=1)
        self.enc = nn.ModuleList(
            [nn.Sequential(*[NAFBlock(w[i]) for _ in range(blocks)]) for i in range(depth)]
        )
        self.down = nn.ModuleList([nn.Conv2d(w[i], w[i + 1], 2, stride=2) for i in range(depth)])
        self.mid = nn.Sequential(*[NAFBlock(w[depth]) for _ in range(middle)])
        self.up = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(w[i + 1], 4 * w[i], 1), nn.PixelShuffle(2))
                for i in range(depth)
            ]
        )
        self.dec = nn.ModuleList(
            [nn.Sequential(*[NAFBlock(w[i]) for _ in range(blocks)]) for i in range(depth)]
        )
        self._make_heads()
