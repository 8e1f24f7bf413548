"""Fog removal: the dark channel prior (blind) and inversion with the true transmission
(oracle upper bound).

The scattering model is ``I = J·t + A·(1 − t)`` (``I`` foggy, ``J`` scene, ``t`` ``(H, W)``
transmission, ``A`` ``(C,)`` airlight). He, Sun & Tang's dark channel prior (CVPR 2009,
TPAMI 2011): in a haze-free outdoor image most patches have a channel close to black, so
the dark channel of ``I / A`` measures ``1 − t``. Here:

1. dark channel = min over the channels, then min over a square patch (15 px at 600×400,
   scaled with the image's size);
2. airlight = the colour of the brightest pixel of ``I`` (channel mean) among the 0.1 %
   of pixels with the brightest dark channel;
3. ``t̃ = 1 − ω·dark(I / A)``, ``ω = 0.95`` (keeps a trace of haze for depth perception);
4. ``t̃`` refined by the guided filter (He, Sun & Tang, ECCV 2010 / TPAMI 2013; OpenCV's
   ``ximgproc.guidedFilter``, from ``opencv-contrib-python-headless``) with the foggy
   image as guide (``colour``: its 3 channels; ``grey``: their mean), radius 60 px at
   600×400 (scaled), regularisation ``ε``;
5. ``J = (I − A) / max(t, t₀) + A``, ``t₀ = 0.1``.

**Space.** Our images are linear; the prior was found on sRGB-encoded photographs.
``space='linear'`` runs every step on linear values (where the scattering model holds);
``space='srgb'`` encodes ``I`` to sRGB first, runs the method there as published and
decodes ``J``. The defaults (linear, colour guide, ``ε = 10⁻⁴``) scored best on the
validation render of ``bench/classical.py --validate`` (scikit-image photographs that are
not in the benchmark, fogged through a depth ramp): in sRGB the dark channel of a clear
scene is not near black (the encoding lifts the darks), so the haze is over-estimated, and
the scattering model ``I = J·t + A·(1 − t)`` no longer holds after the encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter

from data_gen.core.errors import InputError, require
from data_gen.physics.fog import remove_fog
from data_gen.sources import linear_to_srgb, srgb_to_linear
from residual_train.evaluate.classical.truth import Truth, check_image

OMEGA = 0.95  # fraction of the haze removed (He et al.)
T0 = 0.1  # transmission floor (He et al.)
TOP = 1e-3  # fraction of pixels with the brightest dark channel searched for the airlight
EPS = 1e-4  # guided filter regularisation (He et al.'s, for values in [0, 1])
REF_PIXELS = 600 * 400  # image size at which He et al. used a 15 px patch and r = 60
SPACES = ("linear", "srgb")
GUIDES = ("colour", "grey")


def scaled(size_at_ref: float, shape: tuple[int, int]) -> int:
    """A length in pixels given at 600×400, scaled with the square root of the image's
    area (at least 1)."""
    return max(1, round(size_at_ref * math.sqrt(shape[0] * shape[1] / REF_PIXELS)))


def dark_channel(image: np.ndarray, patch: int) -> np.ndarray:
    """``min`` over the channels of ``image`` ``(C, H, W)``, then over a ``patch``² square
    (edges repeated): ``(H, W)`` float32."""
    return minimum_filter(image.min(axis=0), size=int(patch), mode="nearest").astype(np.float32)


def estimate_airlight(image: np.ndarray, dark: np.ndarray, top: float = TOP) -> np.ndarray:
    """The airlight ``(C,)``: the colour of the brightest pixel of ``image`` (channel mean)
    among the ``top`` fraction of pixels with the brightest ``dark`` channel."""
    n = max(1, round(top * dark.size))
    cand = np.argpartition(dark.ravel(), dark.size - n)[-n:]
    flat = image.reshape(image.shape[0], -1)
    best = cand[np.argmax(flat[:, cand].mean(axis=0))]
    return flat[:, best].astype(np.float32)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter of ``src`` ``(H, W)`` with ``guide`` ``(C, H, W)`` (1 or 3
    channels) — OpenCV's ``ximgproc.guidedFilter`` (box windows of side ``2·radius + 1``,
    regularisation ``eps``). ``(H, W)`` float32."""
    try:
        from cv2 import ximgproc
    except ImportError:
        raise InputError(
            "the dark-channel baseline needs OpenCV's contrib modules: "
            "pip install opencv-contrib-python-headless (or 'residual-train[eval]')"
        ) from None
    g = np.ascontiguousarray(np.moveaxis(guide, 0, -1), np.float32)
    out = ximgproc.guidedFilter(g, np.ascontiguousarray(src, np.float32), int(radius), eps)
    return np.asarray(out, np.float32)


@dataclass
class DarkChannelEstimate:
    """What the dark channel prior estimates, in the space it ran in: ``airlight`` ``(C,)``,
    ``raw`` ``t̃`` and ``refined`` ``t`` ``(H, W)`` (before the ``t₀`` floor)."""

    airlight: np.ndarray
    raw: np.ndarray
    refined: np.ndarray


def estimate_dark_channel(
    image: np.ndarray,
    patch: int | None = None,
    omega: float = OMEGA,
    radius: int | None = None,
    eps: float = EPS,
    guide: str = "colour",
) -> DarkChannelEstimate:
    """Airlight and transmission of the foggy ``image`` ``(C, H, W)`` by the dark channel
    prior; ``patch`` (default 15 px at 600×400) and ``radius`` (default 60 px at 600×400)
    in pixels, ``guide`` ``colour`` or ``grey``."""
    require(guide in GUIDES, f"dark channel: guide = {guide!r}; use one of {', '.join(GUIDES)}")
    shape = image.shape[1:]
    patch = patch or 2 * (scaled(15, shape) // 2) + 1
    radius = radius or scaled(60, shape)
    require(patch >= 1 and radius >= 1, f"dark channel: patch {patch}, radius {radius} px: >= 1")
    require(0 < omega <= 1, f"dark channel: omega = {omega} must be in (0, 1]")
    A = estimate_airlight(image, dark_channel(image, patch))
    require(
        bool((A > 0).all()),
        f"dark channel: the estimated airlight {A.tolist()} is not > 0 (an all-black image?)",
    )
    raw = 1 - omega * dark_channel(image / A[:, None, None], patch)
    g = image if guide == "colour" else image.mean(axis=0, keepdims=True)
    refined = guided_filter(g, raw, radius, eps)
    return DarkChannelEstimate(A, raw.astype(np.float32), refined)


def dehaze_dark_channel(
    image: np.ndarray,
    patch: int | None = None,
    omega: float = OMEGA,
    t0: float = T0,
    radius: int | None = None,
    eps: float = EPS,
    space: str = "linear",
    guide: str = "colour",
) -> np.ndarray:
    """He et al.'s dehazing of the linear foggy ``image`` ``(C, H, W)`` (module docstring):
    the scene ``J`` ``(C, H, W)`` float32, linear. Blind: given nothing but the image."""
    x = check_image(image, "dark_channel")
    require(space in SPACES, f"dark channel: space = {space!r}; use one of {', '.join(SPACES)}")
    require(0 < t0 <= 1, f"dark channel: t0 = {t0} must be in (0, 1]")
    if space == "srgb":
        x = linear_to_srgb(x)
    est = estimate_dark_channel(x, patch, omega, radius, eps, guide)
    t = np.maximum(est.refined, t0)[None]
    A = est.airlight[:, None, None]
    J = ((x - A) / t + A).astype(np.float32)
    if space == "srgb":  # decoded, with the curve's linear segment continued below 0
        J = srgb_to_linear(np.maximum(J, 0)) + np.minimum(J, 0) / np.float32(12.92)
    return J


def dehaze_oracle(image: np.ndarray, t: np.ndarray, airlight: np.ndarray) -> np.ndarray:
    """ORACLE: the exact inversion ``J = (I − A·(1 − t)) / t`` with the true transmission
    ``t`` ``(H, W)`` and airlight ``(C,)`` — the upper bound of any fog removal."""
    x = check_image(image, "fog oracle")
    require(t.shape == x.shape[1:], f"fog oracle: t is {t.shape}, the image {x.shape[1:]} (H, W)")
    require(
        np.asarray(airlight).size == x.shape[0],
        f"fog oracle: airlight has {np.asarray(airlight).size} values, the image "
        f"{x.shape[0]} channels",
    )
    return remove_fog(x, t, airlight)


def fog_dark_channel(degraded: np.ndarray, truth: Truth | None = None) -> np.ndarray:
    """Registry form of :func:`dehaze_dark_channel` (blind; ``truth`` unused)."""
    return dehaze_dark_channel(degraded)


def fog_oracle(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """Registry form of :func:`dehaze_oracle` (needs ``truth.t`` and ``truth.airlight``)."""
    truth.need("fog oracle", "t", "airlight")
    return dehaze_oracle(degraded, truth.t, truth.airlight)
