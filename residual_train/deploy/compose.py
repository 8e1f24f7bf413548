"""Composition of residual maps at chosen strengths (docs/design.md §4) — no network involved.

One entry point, :func:`compose`, for every chain of components and every mode; the
compiled kernel (:func:`_compose_kernel`, numba, one pass over the pixels) is its only
implementation, :func:`compose_reference` the same formula in numpy for the tests.

Arrays are ``(C, H, W)`` float32, linear, 0 = black, 1 = white; ``maps[c]`` is component
``c``'s **peeling** residual ``P_c = before_c − before_<next>`` (:mod:`data_gen.chain`;
for blur + noise, ``R_blur`` and ``R_noise`` of docs/design.md §1). ``noise`` is the
sensor's :class:`~data_gen.noise.NoiseModel` at the image's ISO.

**The rule.** In physical order, component ``i`` was estimated at ``u_i = x + Σ_{j≥i} P_j``
(itself and every later component removed). Once the earlier components are corrected at
their strengths the image there is ``y_{i−1}``, and component ``i`` is put back at
``1 − s_i`` of its effect *transported to* ``y_{i−1}``:

    y_i = y_{i−1} + (1 − s_i)·Δ_i(y_{i−1}),   Δ_i(u_i) = −P_i,   y_0 = x + Σ P = Ŝ

with the transport given by the component's kind (:attr:`Component.transport`):

* ``signal`` (sensor noise): ``Δ(y) = −k·P``, ``k = σ(y)/σ(u)`` — the noise a camera makes
  at the new brightness (``σ² = A·max(v, 0) + B``, both brightnesses clipped to [0, 1]);
* ``gain`` (relight ``G·u``, fog ``t·u + A(1 − t)``: pointwise affine maps with smooth
  coefficients): ``Δ(y) = −P + (a − 1)(y − u)`` with ``a`` the map's local slope,
  estimated once from the maps (:meth:`Component.slope`);
* ``spread`` (defocus, lens blur, camera shake): a blur spreads light in proportion to the
  brightness, and for a smooth gain ``B(G·S) ≈ G·B(S)``: ``Δ(y) = −k·P`` with ``k`` the
  slope of ``y_{i−1}`` against ``u_i`` that the earlier *smooth* corrections made,
  ``k = Π_{earlier gains} (a_j + s_j(1 − a_j)) / a_j``.

Written as ``y = x + Σ_i [P_i·(s_i + (1 − s_i)(1 − k_i)) + (1 − s_i)(a_i − 1)(y_{i−1} − u_i)]``
(the last term for gains only), every strength 0 returns ``x`` bit for bit (each ``k`` is
then exactly 1 and each ``y_{i−1} − u_i`` exactly 0) and every strength 1 returns
``x + Σ P``, the clean estimate. One strength at 0 and the others at 1 leaves exactly that
component in, up to the second-order terms of the ``B(G·S) ≈ G·B(S)`` approximation and
the cross terms between two blurs (measured in ``tests/test_chain.py``).

**Modes** (embodiments of the method, JP7686428B2):

* ``consistent`` (default): the rule above — the noise put back at ``(1 − s)`` of its
  brightness-consistent level, ``y = m − (1 − b)·k·R_n`` for blur + noise (the
  brightness-consistent variant of the patent's composition);
* ``literal``: the patent's first embodiment, ``y = x + a·R_b + b·k·R_n``,
  ``k = σ(x + a·R_b)/σ(x)``: the signal-dependent term is ``s·k·P`` with ``k`` measured
  from the input ``x`` instead of ``u``;
* ``sequential`` (the patent's sequential variant) is how the maps are *made* — the noise
  model first, the blur model on the denoised image (:func:`~residual_train.deploy.
  predict_sequential`); its maps compose in consistent mode.

**Strengths** (:class:`Strengths`): one per component, 1 = fully corrected, 0 = left in;
below 0 adds more of a component (−1 doubles it), above 1 over-corrects (2 removes it
twice); the range is [:data:`MIN_STRENGTH`, :data:`MAX_STRENGTH`].

**Bounds.** ``k`` of the noise lies in ``[1/k_max, k_max]``, ``k_max = σ(1)/σ(0) =
sqrt((A + B)/B)`` per channel; gain slopes in ``[1/SLOPE_MAX, SLOPE_MAX]``; so every output
pixel is within ``Σ_i |P_i|·(1 + |1 − s_i|·K_i) + …`` of the input, with ``K_i`` those
bounds: for blur + noise, ``|y − (x + a·R_b + R_n)| ≤ |1 − b|·k_max·|R_n|`` (consistent)
and ``|y − (x + a·R_b)| ≤ |b|·k_max·|R_n|`` (literal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from data_gen.components import ORDER, REGISTRY
from data_gen.core.errors import InputError, require
from data_gen.noise import EPS, NoiseModel, variance_scalar

MODES = ("consistent", "literal", "sequential")
MIN_STRENGTH, MAX_STRENGTH = -1.0, 2.0
SLOPE_MAX = 64.0  # gain slopes are clipped to [1/SLOPE_MAX, SLOPE_MAX]
_KIND = {"gain": 0, "spread": 1, "signal": 2}


# ---- strengths ------------------------------------------------------------------------
@dataclass(frozen=True)
class Strengths:
    """One checked strength per component, in physical order (the value object every
    composition takes). ``None`` or absent = 1 (fully corrected)."""

    values: tuple[tuple[str, float], ...]

    @classmethod
    def resolve(
        cls,
        given: Mapping | None,
        components: Sequence[str],
        limits: tuple[float, float] = (MIN_STRENGTH, MAX_STRENGTH),
        where: str = "strengths",
    ) -> Strengths:
        """A strength for each of ``components`` from ``given`` (name → number or None);
        one given for a component not among them, a non-number or one outside ``limits``
        is refused in one line."""
        given = dict(given or {})
        comps = [c for c in ORDER if c in components]
        stray = sorted(set(components) - set(ORDER))
        require(not stray, f"maps: unknown component {stray[0] if stray else ''!r}")
        unknown = sorted(k for k, v in given.items() if v is not None and k not in comps)
        require(
            not unknown,
            f"{where}.{unknown[0] if unknown else ''}: these maps hold no such residual "
            f"(they hold {', '.join(comps)})",
        )
        return cls(tuple((c, check_strength(c, given.get(c), limits, where)) for c in comps))

    def __getitem__(self, name: str) -> float:
        return dict(self.values)[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.values)

    def as_dict(self) -> dict[str, float]:
        return dict(self.values)


def check_strength(
    name: str,
    v,
    limits: tuple[float, float] = (MIN_STRENGTH, MAX_STRENGTH),
    where: str = "strengths",
) -> float:
    """``v`` as a strength (None = 1), refused in one line unless a finite number within
    ``limits``."""
    if v is None:
        return 1.0
    if isinstance(v, bool):
        raise InputError(f"{where}.{name} = {v!r} is not a number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{where}.{name} = {v!r} is not a number") from None
    lo, hi = limits
    require(
        math.isfinite(f) and lo <= f <= hi,
        f"{where}.{name} = {v} must be in [{lo:g}, {hi:g}] (1 corrects fully, 0 leaves the "
        "component in"
        + (", below 0 adds more of it" if lo < 0 else "")
        + (", above 1 over-corrects)" if hi > 1 else ")"),
    )
    return f


# ---- transport slopes (strength-independent, once per set of maps) ----------------------
def slopes(x: np.ndarray, maps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The local slope ``a`` ``(H, W)`` of every ``gain`` component of ``maps``, estimated
    from its input ``u = x + Σ_{j≥i} P_j`` and output ``u − P_i`` by the component
    (:meth:`data_gen.components.base.Component.slope`), clipped to
    ``[1/SLOPE_MAX, SLOPE_MAX]``."""
    order = [c for c in ORDER if c in maps]
    out = {}
    u = x.astype(np.float32) + sum(maps[c] for c in order)
    for c in order:
        v = u - maps[c]
        if REGISTRY[c].transport == "gain":
            a = REGISTRY[c].slope(u, v)
            out[c] = np.clip(a, 1 / SLOPE_MAX, SLOPE_MAX).astype(np.float32)
        u = v
    return out


# ---- the one entry point ------------------------------------------------------------------
def check_maps(x: np.ndarray, maps: Mapping[str, np.ndarray], noise: NoiseModel) -> None:
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


def _plan(x, maps, strengths, mode, slope_maps):
    require(mode in MODES, f"mode = {mode!r}: use one of {', '.join(MODES)}")
    s = strengths if isinstance(strengths, Strengths) else Strengths.resolve(strengths, maps)
    require(
        set(s.names) == set(maps),
        f"strengths for {', '.join(s.names)}, maps of {', '.join(sorted(maps))}",
    )
    order = list(s.names)
    kinds = np.array([_KIND[REGISTRY[c].transport] for c in order], np.int8)
    if slope_maps is None and (kinds == 0).any():
        slope_maps = slopes(x, maps)
    h, w = x.shape[1:]
    sl = np.ones((len(order), h, w), np.float32)
    for i, c in enumerate(order):
        if kinds[i] == 0:
            require(c in slope_maps, f"slopes: no slope map for component {c}")
            sl[i] = slope_maps[c]
    f32 = np.ascontiguousarray
    res = f32(np.stack([np.asarray(maps[c], np.float32) for c in order]))
    st = np.array([v for _, v in s.values], np.float32)
    return f32(np.asarray(x, np.float32)), res, kinds, sl, st, int(mode == "literal")


def compose(
    x: np.ndarray,
    maps: Mapping[str, np.ndarray],
    strengths: Strengths | Mapping | None,
    noise: NoiseModel,
    mode: str = "consistent",
    slope_maps: Mapping[str, np.ndarray] | None = None,
    lut: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``x`` ``(C, H, W)`` with its components' residual ``maps`` composed at
    ``strengths`` (module docstring), in one fused parallel pass.

    ``slope_maps``: :func:`slopes` of these maps, when already computed (they depend on
    the maps only, not on the strengths). ``lut``: return 8-bit ``(H, W, C)`` through this
    table (65536 entries: the 8-bit value of each 16-bit linear level; the preview and
    service path), else float32 ``(C, H, W)`` (into ``out`` when given)."""
    check_maps(x, maps, noise)
    xs, res, kinds, sl, st, literal = _plan(x, maps, strengths, mode, slope_maps)
    A, B = (np.asarray(v, np.float32) for v in (noise.A, noise.B))
    c, h, w = xs.shape
    if lut is not None:
        require(lut.shape == (65536,) and lut.dtype == np.uint8, "lut: 65536 uint8 entries")
        out8 = np.empty((h, w, c), np.uint8)
        _compose_srgb8_kernel(xs, res, kinds, sl, st, literal, A, B, lut, out8)
        return out8
    if out is None:
        out = np.empty_like(xs)
    _compose_kernel(xs, res, kinds, sl, st, literal, A, B, out)
    return out


@numba.njit(inline="always", cache=True)
def _pixel(x, res, kinds, sl, st, literal, ch, i, j, ac, bc):  # pragma: no cover - compiled
    """One output value of :func:`compose` (float32 arithmetic, module docstring)."""
    one, zero = np.float32(1), np.float32(0)
    k_n = res.shape[0]
    xv = x[ch, i, j]
    y = xv
    acc = zero  # Σ of the terms so far: y_{i-1} = u_i + acc
    spread = one  # slope the earlier smooth corrections gave: what a blur follows
    for q in range(k_n):
        u = xv  # u_q = x + Σ_{j>=q} P_j, summed from the last component
        for r in range(k_n - 1, q - 1, -1):
            u = u + res[r, ch, i, j]
        p, s = res[q, ch, i, j], st[q]
        kind = kinds[q]
        if kind == 0:  # gain: pointwise affine with a smooth slope a
            a = sl[q, i, j]
            term = p * s + (one - s) * (a - one) * ((u + acc) - u)
            spread = spread * ((a + s * (one - a)) / a)
        elif kind == 1:  # spread: follows the earlier smooth corrections
            term = p * (s + (one - s) * (one - spread))
        elif literal == 1:  # signal, the patent's first embodiment
            va = variance_scalar(min(max(xv + acc, zero), one), ac, bc) + np.float32(EPS)
            vb = variance_scalar(min(max(xv, zero), one), ac, bc) + np.float32(EPS)
            term = (s * np.sqrt(va / vb)) * p
        else:  # signal, brightness-consistent
            m = u + acc
            vm = variance_scalar(min(max(m, zero), one), ac, bc) + np.float32(EPS)
            vd = variance_scalar(min(max(u, zero), one), ac, bc) + np.float32(EPS)
            term = p * (one - (one - s) * np.sqrt(vm / vd))
        acc = acc + term
        y = y + term
    return y


@numba.njit(parallel=True, cache=True)
def _compose_kernel(x, res, kinds, sl, st, literal, A, B, out):  # pragma: no cover
    c, h, w = x.shape
    for ch in range(c):
        for i in numba.prange(h):
            for j in range(w):
                out[ch, i, j] = _pixel(x, res, kinds, sl, st, literal, ch, i, j, A[ch], B[ch])


@numba.njit(parallel=True, cache=True)
def _compose_srgb8_kernel(x, res, kinds, sl, st, literal, A, B, lut, out):  # pragma: no cover
    c, h, w = x.shape
    for i in numba.prange(h):
        for ch in range(c):
            for j in range(w):
                y = _pixel(x, res, kinds, sl, st, literal, ch, i, j, A[ch], B[ch])
                y = min(max(y, np.float32(0)), np.float32(1))
                out[i, j, ch] = lut[np.int64(y * np.float32(65535) + np.float32(0.5))]


@dataclass
class _Walk:
    """The state of :func:`compose_reference` while it walks the components: the input
    ``xs``, each component's estimate point ``u[q]``, the sum of the terms so far ``acc``
    (``y_{q-1} = u_q + acc``), the slope the earlier gains left ``spread``, the slope maps
    ``sl``, the noise model and the mode."""

    xs: np.ndarray
    u: list
    acc: np.ndarray
    spread: np.ndarray
    sl: np.ndarray
    noise: NoiseModel
    literal: bool


def _gain_term(w: _Walk, q: int, p: np.ndarray, s: np.float32) -> np.ndarray:
    """A pointwise affine map with a smooth slope ``a`` (relight, fog)."""
    one, a = np.float32(1), w.sl[q]
    term = p * s + (one - s) * (a - one) * ((w.u[q] + w.acc) - w.u[q])
    w.spread = w.spread * ((a + s * (one - a)) / a)
    return term


def _spread_term(w: _Walk, q: int, p: np.ndarray, s: np.float32) -> np.ndarray:
    """A blur: follows the slope of the earlier smooth corrections."""
    one = np.float32(1)
    return p * (s + (one - s) * (one - w.spread))


def _signal_term(w: _Walk, q: int, p: np.ndarray, s: np.float32) -> np.ndarray:
    """Noise: re-scaled by σ at the new brightness (``literal``: measured from ``x``)."""
    one = np.float32(1)
    if w.literal:
        return (s * w.noise.ratio(w.xs + w.acc, w.xs)) * p
    return p * (one - (one - s) * w.noise.ratio(w.u[q] + w.acc, w.u[q]))


# the term of each transport kind, indexed by its code in _KIND (the compiled kernel's
# _pixel branches on the same codes: numba compiles no table of functions into its loop)
_TERMS = {_KIND["gain"]: _gain_term, _KIND["spread"]: _spread_term, _KIND["signal"]: _signal_term}


def compose_reference(
    x: np.ndarray,
    maps: Mapping[str, np.ndarray],
    strengths: Strengths | Mapping | None,
    noise: NoiseModel,
    mode: str = "consistent",
    slope_maps: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """:func:`compose` written with numpy arrays, component by component (the formula as
    the module docstring states it; for tests and reading)."""
    xs, res, kinds, sl, st, literal = _plan(x, maps, strengths, mode, slope_maps)
    u = [None] * (len(res) + 1)
    u[len(res)] = xs
    for q in range(len(res) - 1, -1, -1):
        u[q] = u[q + 1] + res[q]
    ones = np.ones(xs.shape[1:], np.float32)
    w = _Walk(xs, u, np.zeros_like(xs), ones, sl, noise, bool(literal))
    y = xs.copy()
    for q in range(len(res)):
        term = _TERMS[int(kinds[q])](w, q, res[q], st[q])
        w.acc = w.acc + term
        y = y + term
    return y


# ---- blur + noise shorthands (the two strengths a, b of docs/design.md §4) ------------------
def compose_blur_noise(
    x, r_blur, r_noise, a: float, b: float, noise: NoiseModel, mode: str = "consistent", **kw
) -> np.ndarray:
    """:func:`compose` of the two maps of a blur + noise model at ``a`` (blur), ``b``
    (noise)."""
    return compose(
        x, {"blur": r_blur, "noise": r_noise}, {"blur": a, "noise": b}, noise, mode, **kw
    )


# ---- distortion, the optional last stage ----------------------------------------------------
def check_distortion(k, where: str = "distortion") -> tuple[float, ...] | None:
    """``null`` / empty (no correction) or radial coefficients ``[k1, k2, ...]`` a lens can
    have (:func:`data_gen.physics.distortion.check_coefficients`)."""
    from data_gen.physics.distortion import check_coefficients

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
    return check_coefficients(out, where)


def check_distortion_stage(k: tuple[float, ...] | None, order, layout: str) -> None:
    """Whether :func:`correct_distortion_stage` can run: packed Bayer planes are refused
    (resampling a mosaic mixes colours), and ``order`` is 1 or 3."""
    if k is None:
        return
    require(layout == "rgb", "distortion: packed Bayer planes cannot be resampled; demosaic first")
    require(
        order in (1, 3) and not isinstance(order, bool),
        f"distortion_order = {order!r}: 1 (bilinear) or 3 (bicubic)",
    )


def correct_distortion_stage(y: np.ndarray, k: tuple[float, ...] | None, order: int, layout: str):
    """The optional last stage: radial distortion corrected by resampling, after the blur
    correction (the distortion was kept out of the blur)."""
    check_distortion_stage(k, order, layout)
    if k is None:
        return y
    from data_gen.physics.distortion import correct_distortion

    return correct_distortion(y, k, order)
