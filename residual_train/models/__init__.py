"""Residual networks: one trunk, one output head per degradation component.

``build_model(cfg)`` selects the backbone by ``cfg['arch']`` (``unet`` or ``nafnet``).
Every model maps ``x`` ``(B, C, H, W)`` (any H, W) to ``{head: residual (B, C, H, W)}``;
``x + residual`` is the image with that component corrected.
"""

from __future__ import annotations

from collections.abc import Sequence

from data_gen.components import ORDER
from data_gen.components import V1 as V1_COMPONENTS
from data_gen.errors import InputError, require
from data_gen.registry import Registry
from data_gen.values import integer
from residual_train.models.base import ResidualNet
from residual_train.models.nafnet import NAFNet
from residual_train.models.unet import UNet

HEADS = V1_COMPONENTS  # the components of a schema-v1 dataset
ARCHS = Registry("model", key="arch")
ARCHS.register("unet")(UNet)
ARCHS.register("nafnet")(NAFNet)


def resolve_heads(heads, components: Sequence[str] | None = None) -> list[str]:
    """``model.heads``: ``auto`` (or absent) = one head per component of the dataset
    (``components``; schema v1: blur, noise); a list must name distinct components of it
    (of :data:`data_gen.chain.ORDER` when the dataset is not known, e.g. from a card)."""
    if heads in (None, "auto"):
        return list(components or HEADS)
    heads = [heads] if isinstance(heads, str) else heads
    require(
        isinstance(heads, (list, tuple)) and all(isinstance(h, str) for h in heads),
        f"model.heads = {heads!r}: auto, or a list of components (e.g. [blur, noise])",
    )
    heads = list(heads)
    known = tuple(components or ORDER)
    for h in heads:
        if h not in known:
            raise InputError(
                f"model.heads: {h!r} is not a component of the data ({', '.join(known)})"
            )
    if not heads or len(set(heads)) != len(heads):
        raise InputError(f"model.heads = {heads}: give one or more distinct components")
    return heads


def build_model(cfg: dict, channels: int, components: Sequence[str] | None = None) -> ResidualNet:
    """Model from a plain config dict (``arch``, ``heads``, width/depth options);
    ``components``: the dataset's (``heads: auto`` gives one head each)."""
    opts = {k: v for k, v in cfg.items() if k not in ("arch", "name")}
    arch = cfg.get("arch", "unet")
    builder = ARCHS.get(arch)
    heads = resolve_heads(opts.pop("heads", "auto"), components)
    for key in ("width", "depth", "blocks", "middle", "deconv"):
        if key in opts:
            opts[key] = integer(opts[key], f"model.{key}", 0)
    try:
        return builder(channels=channels, heads=heads, **opts)
    except TypeError as e:
        raise InputError(f"model: bad option for arch {arch!r}: {e}") from None


__all__ = ["ARCHS", "HEADS", "NAFNet", "ResidualNet", "UNet", "build_model", "resolve_heads"]
