"""The method's network: a U-Net with a convolutional encoder, transposed-convolution
decoder and additive skip connections; heads predict one residual per component."""

from __future__ import annotations

from torch import nn

from data_gen.core.errors import InputError
from residual_train.models.base import ResidualNet


def conv_block(c_in: int, c_out: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


class UNet(ResidualNet):
    """Widths ``width * 2**level`` for ``depth`` downsamplings; ``blocks`` convs per level."""

    def __init__(
        self,
        channels: int = 3,
        heads=("blur", "noise"),
        width: int = 32,
        depth: int = 3,
        blocks: int = 2,
        **options,
    ) -> None:
        # options: what every ResidualNet takes (sigma_map, deconv, ...; see models/base.py)
        super().__init__(channels, heads, **options)
        if width < 1 or depth < 0 or blocks < 1:
            raise InputError(
                f"model.width = {width}, model.depth = {depth}, model.blocks = {blocks}: "
                "each must be a positive integer"
            )
        self.levels, self.features = depth, width
        w = [width * 2**i for i in range(depth + 1)]
        self.stem = conv_block(self.in_channels, w[0], 1)
        self.enc = nn.ModuleList([conv_block(w[i], w[i], blocks) for i in range(depth)])
        self.down = nn.ModuleList(
            [nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1) for i in range(depth)]
        )
        self.mid = conv_block(w[depth], w[depth], blocks)
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(depth)]
        )
        self.dec = nn.ModuleList([conv_block(w[i], w[i], blocks) for i in range(depth)])
        self._make_heads()
