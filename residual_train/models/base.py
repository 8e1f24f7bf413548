"""The interface every backbone implements: padding, conditioning and heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("blur", "noise")


class ResidualNet(nn.Module):
    """Base: pads the input to a multiple of ``2**levels``, runs :meth:`trunk`, applies heads.

    ``channels``: image channels C; ``sigma_map``: an extra C-channel noise-level map is
    concatenated to the input (conditioning). Subclasses set ``self.levels`` and
    ``self.features`` and the modules of the U-shaped :meth:`trunk` (``stem``, per level
    ``enc``/``down``/``up``/``dec``, and ``mid``), or override ``trunk``.
    """

    levels: int
    features: int

    def __init__(self, channels: int, heads: list[str], sigma_map: bool = False) -> None:
        super().__init__()
        self.channels, self.heads, self.sigma_map = channels, list(heads), sigma_map
        self.in_channels = channels * (2 if sigma_map else 1)

    def _make_heads(self) -> None:
        self.out = nn.ModuleDict(
            {h: nn.Conv2d(self.features, self.channels, 3, padding=1) for h in self.heads}
        )
        for conv in self.out.values():  # start from "no correction"
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def trunk(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder, bottleneck, decoder with additive skips: ``(B, features, H, W)``."""
        x = self.stem(z)
        skips = []
        for enc, down in zip(self.enc, self.down, strict=True):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.mid(x)
        for i in reversed(range(self.levels)):
            x = self.dec[i](self.up[i](x) + skips[i])  # additive skip
        return x

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if self.sigma_map:
            if sigma is None:
                raise ValueError("this model is conditioned on a noise-level map: pass sigma")
            z = torch.cat([x, sigma], dim=1)
        else:
            z = x
        h, w = z.shape[-2:]
        m = 2**self.levels
        # always pad (possibly by 0): a branch on the size would be frozen by ONNX tracing;
        # replicate works for any size
        z = F.pad(z, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="replicate")
        f = self.trunk(z)
        return {k: head(f)[..., :h, :w] for k, head in self.out.items()}

    def restore(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``x + residual`` per head (the final skip of the method's network)."""
        return {k: x + r for k, r in self(x, sigma).items()}
