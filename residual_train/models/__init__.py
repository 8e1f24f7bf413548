"""Residual networks: one trunk, one output head per degradation component.

``build_model(cfg)`` selects the backbone by ``cfg['arch']`` (``unet`` or ``nafnet``).
Every model maps ``x`` ``(B, C, H, W)`` (any H, W) to ``{head: residual (B, C, H, W)}``;
``x + residual`` is the image with that component corrected.
"""

from __future__ import annotations

from data_gen.registry import Registry
from residual_train.models.base import HEADS, ResidualNet
from residual_train.models.nafnet import NAFNet
from residual_train.models.unet import UNet

ARCHS = Registry("model", key="arch")
ARCHS.register("unet")(UNet)
ARCHS.register("nafnet")(NAFNet)


def build_model(cfg: dict, channels: int) -> ResidualNet:
    """Model from a plain config dict (``arch``, ``heads``, width/depth options)."""
    from data_gen.errors import InputError

    opts = {k: v for k, v in cfg.items() if k not in ("arch", "name")}
    arch = cfg.get("arch", "unet")
    builder = ARCHS.get(arch)
    heads = list(opts.pop("heads", HEADS))
    for h in heads:
        if h not in HEADS:
            raise InputError(f"model.heads: unknown head {h!r}; heads are {list(HEADS)}")
    if not heads or len(set(heads)) != len(heads):
        raise InputError(f"model.heads = {heads}: give one or more distinct heads of {list(HEADS)}")
    try:
        return builder(channels=channels, heads=heads, **opts)
    except TypeError as e:
        raise InputError(f"model: bad option for arch {arch!r}: {e}") from None


__all__ = ["ARCHS", "HEADS", "NAFNet", "ResidualNet", "UNet", "build_model"]
