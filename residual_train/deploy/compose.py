"""Composition of residual maps at chosen strengths (docs/design.md §4) — no network involved.

Arrays are ``(C, H, W)`` float32, linear, 0 = black, 1 = white. ``a`` is the blur
strength, ``b`` the noise strength, both in [0, 1]. ``noise`` is the sensor's
:class:`~data_gen.noise.NoiseModel` at the image's ISO (``σ²(v) = A·max(v, 0) + B``).

* :func:`compose_consistent` (default): the noise residual is re-scaled by the
  brightness change the blur correction caused,
  ``y = x + a·R_b + R_n·(1 − (1 − b)·k)``, ``k = σ(m)/σ(d)``, ``d = x + R_n``,
  ``m = d + a·R_b`` — algebraically ``m − (1 − b)·k·R_n``, written so that
  ``a = b = 0`` returns ``x`` bit for bit.
* :func:`compose_literal`: the patent's first embodiment,
  ``y = x + a·R_b + b·k·R_n``, ``k = σ(x + a·R_b)/σ(x)``.
* :func:`compose_chain`: any number of components in physical order.

**Bounds.** ``k`` is :meth:`NoiseModel.ratio`: both brightnesses are clipped to the
sensor's range [0, 1] before σ is taken, so ``1/k_max ≤ k ≤ k_max`` with
``k_max = σ(1)/σ(0) = sqrt((A + B)/B)`` per channel — the largest change of noise level
the sensor can produce. Estimated residuals can make ``d`` dip below black or ``m``
overshoot white; neither can inflate ``k`` past that. Every output pixel therefore
satisfies ``|y − (x + a·R_b + R_n)| ≤ (1 − b)·k_max·|R_n|`` (consistent) and
``|y − (x + a·R_b)| ≤ b·k_max·|R_n|`` (literal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from data_gen.chain import ORDER
from data_gen.errors import InputError, require
from data_gen.noise import EPS, NoiseModel, variance_scalar

MODES = ("consistent", "literal")


def check_strength(name: str, v: float) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InputError(f"strengths.{name} = {v!r} is not a number") from None
    require(0.0 <= v <= 1.0, f"strengths.{name} = {v:g} must be in [0, 1]")
    return v


def check_distortion(k, where: str = "distortion") -> tuple[float, ...] | None:
    """``null`` / empty (no correction) or the radial coefficients ``[k1, k2, ...]`` of
    :func:`data_gen.components.distort_points`, finite numbers."""
    if k in (None, "", "none") or (isinstance(k, (list, tuple)) and not k):
        return None
    require(
        isinstance(k, (list, tuple)),
        f"{where} = {k!r}: a list of radial coefficients [k1, k2, ...] or null",
    )
    try:
        out = tuple(float(v) for v in k)
    except (TypeError, ValueError):
        raise InputError(f"{where} = {list(k)!r}: the coefficients must be numbers") from None
    require(all(np.isfinite(out)), f"{where} = {list(out)}: the coefficients must be finite")
    return out


def check_distortion_stage(k: tuple[float, ...] | None, order: int, layout: str) -> None:
    """Whether :func:`correct_distortion_stage` can run: packed Bayer planes are refused
    (resampling a mosaic mixes colours), and ``order`` is 1 or 3."""
    if k is None:
        return
    require(layout == "rgb", "distortion: packed Bayer planes cannot be resampled; demosaic first")
    require(order in (1, 3), f"distortion_order = {order}: 1 (bilinear) or 3 (bicubic)")


def correct_distortion_stage(y: np.ndarray, k: tuple[float, ...] | None, order: int, layout: str):
    """The optional last stage: radial distortion corrected by resampling, after the blur
    correction (the distortion was kept out of the blur)."""
    check_distortion_stage(k, order, layout)
    if k is None:
        return y
    from data_gen.components import correct_distortion

    return correct_distortion(y, k, order)


def compose_consistent(x, r_blur, r_noise, a: float, b: float, noise: NoiseModel) -> np.ndarray:
    """Brightness-consistent composition (numpy reference; see module docstring)."""
    a, b = np.float32(check_strength("blur", a)), np.float32(check_strength("noise", b))
    d = x + r_noise
    m = d + a * r_blur
    k = noise.ratio(m, d)
    return x + a * r_blur + r_noise * (np.float32(1) - (np.float32(1) - b) * k)


def compose_literal(x, r_blur, r_noise, a: float, b: float, noise: NoiseModel) -> np.ndarray:
    """The patent's first embodiment: ``y = x + a·R_b + b·k·R_n``, ``k = σ(x + a·R_b)/σ(x)``."""
    a, b = np.float32(check_strength("blur", a)), np.float32(check_strength("noise", b))
    k = noise.ratio(x + a * r_blur, x)
    return x + a * r_blur + b * k * r_noise


@dataclass
class Component:
    """One degradation in the chain: its residual, strength and optional noise model.

    ``noise``: the :class:`NoiseModel` of a signal-dependent component (sensor noise);
    ``None`` for additive ones (blur, relighting, fog), whose residual does not rescale.
    """

    name: str
    residual: np.ndarray
    strength: float
    noise: NoiseModel | None = None


def resolve_strengths(strengths: dict, components) -> dict[str, float]:
    """One checked strength per component of ``components`` (``None`` or absent = 1, fully
    corrected); a strength given for a component not among them is refused, naming it."""
    unknown = sorted(k for k, v in strengths.items() if v is not None and k not in components)
    require(
        not unknown,
        f"strengths.{unknown[0] if unknown else ''}: these maps hold no such residual "
        f"(they hold {', '.join(sorted(components))})",
    )
    return {
        c: check_strength(c, 1.0 if strengths.get(c) is None else strengths[c]) for c in components
    }


def compose_components(
    x: np.ndarray,
    maps: dict[str, np.ndarray],
    strengths: dict,
    noise: NoiseModel,
    order: Sequence[str],
) -> np.ndarray:
    """:func:`compose_chain` of the residual ``maps`` in physical ``order`` at
    ``strengths`` (:func:`resolve_strengths`); ``noise`` is the signal-dependent one
    (rescaled), every other component is additive."""
    s = resolve_strengths(strengths, maps)
    stray = sorted(set(maps) - set(order))
    require(not stray, f"maps: unknown component {stray[0] if stray else ''!r}")
    comps = [
        Component(c, maps[c], s[c], noise if c == "noise" else None) for c in order if c in maps
    ]
    return compose_chain(x, comps)


def compose_maps(
    mode: str, x: np.ndarray, maps: dict[str, np.ndarray], strengths: dict, noise: NoiseModel
) -> tuple[np.ndarray, dict[str, float]]:
    """Compose residual ``maps`` at ``strengths`` (:func:`resolve_strengths`): blur and
    noise by :func:`compose` in ``mode``; any other set of components by
    :func:`compose_components` in physical order (consistent mode). Returns the image and
    the strengths used."""
    s = resolve_strengths(strengths, maps)
    if set(maps) == {"blur", "noise"}:
        return compose(mode, x, maps["blur"], maps["noise"], s["blur"], s["noise"], noise), s
    require(
        mode == "consistent",
        f"mode = {mode!r}: maps of {', '.join(sorted(maps))} compose in consistent mode only",
    )
    return compose_components(x, maps, s, noise, ORDER), s


def compose_chain(x: np.ndarray, components: Sequence[Component]) -> np.ndarray:
    """Components in physical order (e.g. relight -> blur -> noise).

    Each residual ``R_i`` was estimated at ``ref_i = x + Σ_{j>=i} R_j`` (that component
    and the later ones removed); once the earlier ones are corrected at their strengths the
    image there is ``m_i = ref_i + Σ_{j<i} s_j·R_j``, and a signal-dependent component
    rescales by ``k_i = σ(m_i)/σ(ref_i)`` (bounded as in the module docstring). Output
    ``y = x + Σ R_i·(1 − (1 − s_i)·k_i)``. With blur -> noise this is
    :func:`compose_consistent`.
    """
    y = x.copy()
    for i, c in enumerate(components):
        s = np.float32(check_strength(c.name, c.strength))
        if c.noise is None:
            y += s * c.residual
            continue
        ref = x
        for later in components[i:][::-1]:
            ref = ref + later.residual
        m = ref
        for earlier in components[:i]:
            m = m + np.float32(earlier.strength) * earlier.residual
        k = c.noise.ratio(m, ref)
        y += c.residual * (np.float32(1) - (np.float32(1) - s) * k)
    return y


@numba.njit(inline="always", cache=True)
def _consistent_pixel(xv, rbv, rnv, a, b, ac, bc):  # pragma: no cover - compiled
    """One pixel of :func:`compose_consistent` (float32 scalars)."""
    one, zero = np.float32(1), np.float32(0)
    d = xv + rnv
    m = d + a * rbv
    # NoiseModel.ratio: both brightnesses clipped to the sensor's range [0, 1]
    vm = variance_scalar(min(max(m, zero), one), ac, bc) + np.float32(EPS)
    vd = variance_scalar(min(max(d, zero), one), ac, bc) + np.float32(EPS)
    k = np.sqrt(vm / vd)
    return xv + a * rbv + rnv * (one - (one - b) * k)


@numba.njit(parallel=True, fastmath=False, cache=True)
def _consistent_kernel(x, rb, rn, a, b, A, B, out):  # pragma: no cover - compiled
    c, h, w = x.shape
    for ch in range(c):
        ac, bc = A[ch], B[ch]
        for i in numba.prange(h):
            for j in range(w):
                out[ch, i, j] = _consistent_pixel(
                    x[ch, i, j], rb[ch, i, j], rn[ch, i, j], a, b, ac, bc
                )


@numba.njit(parallel=True, fastmath=False, cache=True)
def _consistent_srgb8_kernel(x, rb, rn, a, b, A, B, lut, out):  # pragma: no cover - compiled
    c, h, w = x.shape
    for i in numba.prange(h):
        for ch in range(c):
            ac, bc = A[ch], B[ch]
            for j in range(w):
                y = _consistent_pixel(x[ch, i, j], rb[ch, i, j], rn[ch, i, j], a, b, ac, bc)
                y = min(max(y, np.float32(0)), np.float32(1))
                out[i, j, ch] = lut[np.int64(y * np.float32(65535) + np.float32(0.5))]


def compose_consistent_srgb8(
    x, r_blur, r_noise, a: float, b: float, noise: NoiseModel, lut: np.ndarray
) -> np.ndarray:
    """:func:`compose_consistent` straight to 8-bit ``(H, W, C)`` through ``lut`` (65536
    entries: the 8-bit value of each 16-bit linear level) in one parallel pass, reading the
    maps where they lie (memory-mapped regions need no copy): the preview / service path."""
    a, b = np.float32(check_strength("blur", a)), np.float32(check_strength("noise", b))
    check_maps(x, {"blur": r_blur, "noise": r_noise}, noise)
    require(lut.shape == (65536,) and lut.dtype == np.uint8, "lut: 65536 uint8 entries")
    f32 = [v if v.dtype == np.float32 else v.astype(np.float32) for v in (x, r_blur, r_noise)]
    out = np.empty((x.shape[1], x.shape[2], x.shape[0]), np.uint8)
    A, B = (np.asarray(v, np.float32) for v in (noise.A, noise.B))
    _consistent_srgb8_kernel(*f32, a, b, A, B, lut, out)
    return out


def check_maps(x: np.ndarray, maps: dict[str, np.ndarray], noise: NoiseModel) -> None:
    """Shapes, dtypes and finiteness the compiled kernel relies on (it reads no bounds)."""
    require(x.ndim == 3, f"input has shape {x.shape}; expected (C, H, W)")
    for k, v in maps.items():
        require(
            v.shape == x.shape,
            f"residual map {k!r} has shape {v.shape}, the input {x.shape}: they must match",
        )
    require(
        noise.A.ndim == 1 and noise.channels == x.shape[0],
        f"noise model has {noise.channels} channel(s), the input {x.shape[0]}",
    )


def compose_consistent_fast(
    x, r_blur, r_noise, a: float, b: float, noise: NoiseModel, out: np.ndarray | None = None
) -> np.ndarray:
    """Same numbers as :func:`compose_consistent`, in one fused parallel pass (the slider path)."""
    a, b = np.float32(check_strength("blur", a)), np.float32(check_strength("noise", b))
    check_maps(x, {"blur": r_blur, "noise": r_noise}, noise)
    f32 = [np.ascontiguousarray(v, np.float32) for v in (x, r_blur, r_noise)]
    if out is None:
        out = np.empty_like(f32[0])
    A, B = (np.asarray(v, np.float32) for v in (noise.A, noise.B))
    _consistent_kernel(*f32, a, b, A, B, out)
    return out


def compose(mode: str, x, r_blur, r_noise, a: float, b: float, noise: NoiseModel) -> np.ndarray:
    require(mode in MODES, f"mode = {mode!r}: use one of {MODES}")
    if mode == "consistent":
        return compose_consistent_fast(x, r_blur, r_noise, a, b, noise)
    check_maps(x, {"blur": r_blur, "noise": r_noise}, noise)
    return compose_literal(x, r_blur, r_noise, a, b, noise)
