"""Residual networks: one trunk, one output head per degradation component.

``build_model(cfg)`` instantiates ``cfg['_target_']``: by default :func:`build_net`, which
selects the backbone by ``cfg['arch']`` (``unet`` or ``nafnet``).
Every model maps ``x`` ``(B, C, H, W)`` (any H, W) to ``{head: residual (B, C, H, W)}``;
``x + residual`` is the image with that component corrected.
"""

from __future__ import annotations

from collections.abc import Sequence

from data_gen.components import ORDER
from data_gen.components import V1 as V1_COMPONENTS
from data_gen.core.errors import InputError, require
from data_gen.core.registry import Registry
from data_gen.core.values import integer
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


# the model config's `_target_` when it names none (every config and card from before it)
NET_TARGET = "residual_train.models.build_net"


def build_net(channels: int, arch: str, heads: list[str], **options) -> ResidualNet:
    """``model._target_``: the backbone registered as ``arch`` (:data:`ARCHS`) with the
    model config's other options (width, depth, ...); ``heads`` resolved."""
    builder = ARCHS.get(arch)
    for key in ("width", "depth", "blocks", "middle", "deconv"):
        if key in options:
            options[key] = integer(options[key], f"model.{key}", 0)
    try:
        return builder(channels=channels, heads=heads, **options)
    except TypeError as e:
        raise InputError(f"model: bad option for arch {arch!r}: {e}") from None


def build_model(cfg: dict, channels: int, components: Sequence[str] | None = None) -> ResidualNet:
    """The network of a model config (a config group, a checkpoint's hyper-parameters or a
    card): its ``_target_`` (:func:`build_net` when it names none) instantiated with
    ``channels`` and the resolved ``heads`` (``components``: the dataset's; ``heads: auto``
    gives one head each)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    opts = {k: v for k, v in cfg.items() if k not in ("_target_", "name")}
    target = cfg["_target_"] if "_target_" in cfg else NET_TARGET
    heads = resolve_heads(opts.pop("heads", "auto"), components)
    if target == NET_TARGET:  # called directly: its own one-line errors
        return build_net(channels, heads=heads, **opts)
    try:
        return instantiate({"_target_": target, **opts}, channels, heads=heads, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__ or e
        raise InputError(f"model._target_ = {target!r}: {' '.join(str(cause).split())}") from None


__all__ = [
    "ARCHS",
    "HEADS",
    "NET_TARGET",
    "NAFNet",
    "ResidualNet",
    "UNet",
    "build_model",
    "build_net",
    "resolve_heads",
]
