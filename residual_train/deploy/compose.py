"""Composition of residual maps at chosen strengths (DESIGN §1) — no network involved.

Arrays are ``(C, H, W)`` float32, linear, 0 = black, 1 = white. ``a`` is the blur
strength, ``b`` the noise strength, both in [0, 1]. The sensor's noise level is
``σ²(v) = A·v + B`` per channel (``A``, ``B`` of shape ``(C,)``, normalised units).

* :func:`compose_consistent` (default): the noise residual is re-scaled by the
  brightness change the blur correction caused,
  ``y = x + a·R_b + R_n·(1 − (1 − b)·k)``, ``k = σ(m)/σ(d)``, ``d = x + R_n``,
  ``m = d + a·R_b`` — algebraically ``m − (1 − b)·k·R_n``, written so that
  ``a = b = 0`` returns ``x`` bit for bit.
* :func:`compose_literal`: the patent's first embodiment,
  ``y = x + a·R_b + b·k·R_n``, ``k = σ(x + a·R_b)/σ(x)``.
* :func:`compose_chain`: any number of components in physical order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from data_gen.errors import InputError, require

EPS = 1e-12  # guards σ → 0: k = sqrt((σ²(m) + EPS) / (σ²(d) + EPS))
MODES = ("consistent", "literal")


def check_strength(name: str, v: float) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InputError(f"strengths.{name} = {v!r} is not a number") from None
    require(0.0 <= v <= 1.0, f"strengths.{name} = {v:g} must be in [0, 1]")
    return v


def noise_var(v: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    A = np.asarray(A, np.float32)[:, None, None]
    B = np.asarray(B, np.float32)[:, None, None]
    return np.maximum(A * v + B, np.float32(0))


def brightness_ratio(after: np.ndarray, before: np.ndarray, A, B) -> np.ndarray:
    """``k = σ(after) / σ(before)`` per pixel, guarded (equal inputs give exactly 1)."""
    eps = np.float32(EPS)
    return np.sqrt((noise_var(after, A, B) + eps) / (noise_var(before, A, B) + eps))


def compose_consistent(x, r_blur, r_noise, a: float, b: float, A, B) -> np.ndarray:
    """Brightness-consistent composition (numpy reference; see module docstring)."""
    a, b = np.float32(check_strength("blur", a)), np.float32(check_strength("noise", b))
    d = x + r_noise
    m = d + a * r_blur
    k = brightness_ratio(m, d, A, B)
    return x + a * r_blur + r_noise * (np.float32(1) - (np.float32(1) - b) * k)


def compose_literal(x, r_blur, r_noise, a: float, b: float, A, B) -> np.ndarray:
    """The patent's first embodiment: ``y = x + a·R_b + b·k·R_n``, ``k = σ(x + a·R_b)/σ(x)``."""
    a, b = np.float32(check_strength("blur", a)), np.float32(check_strength("noise", b))
    k = brightness_ratio(x + a * r_blur, x, A, B)
    return x + a * r_blur + b * k * r_noise


@dataclass
class Component:
    """One degradation in the chain: its residual, strength and optional level model.

    ``variance``: ``v -> σ²(v)`` for signal-dependent components (noise); ``None`` for
    additive ones (blur, relighting, fog), whose residual does not rescale.
    """

    name: str
    residual: np.ndarray
    strength: float
    variance: Callable[[np.ndarray], np.ndarray] | None = None


def compose_chain(x: np.ndarray, components: Sequence[Component]) -> np.ndarray:
    """Components in physical order (e.g. relight -> blur -> noise).

    Each residual ``R_i`` was estimated at ``ref_i = x + Σ_{j>=i} R_j`` (that component
    and the later ones removed); once the earlier ones are corrected at their strengths the
    image there is ``m_i = ref_i + Σ_{j<i} s_j·R_j``, and a signal-dependent component
    rescales by ``k_i = σ(m_i)/σ(ref_i)``. Output ``y = x + Σ R_i·(1 − (1 − s_i)·k_i)``.
    With blur -> noise this is :func:`compose_consistent`.
    """
    eps = np.float32(EPS)
    y = x.copy()
    for i, c in enumerate(components):
        s = np.float32(check_strength(c.name, c.strength))
        if c.variance is None:
            y += s * c.residual
            continue
        ref = x
        for later in components[i:][::-1]:
            ref = ref + later.residual
        m = ref
        for earlier in components[:i]:
            m = m + np.float32(earlier.strength) * earlier.residual
        k = np.sqrt((c.variance(m) + eps) / (c.variance(ref) + eps))
        y += c.residual * (np.float32(1) - (np.float32(1) - s) * k)
    return y


@numba.njit(parallel=True, fastmath=False, cache=True)
def _consistent_kernel(x, rb, rn, a, b, A, B, out):  # pragma: no cover - compiled
    c, h, w = x.shape
    eps = np.float32(EPS)
    one = np.float32(1)
    zero = np.float32(0)
    for ch in range(c):
        ac, bc = A[ch], B[ch]
        for i in numba.prange(h):
            for j in range(w):
                xv, rbv, rnv = x[ch, i, j], rb[ch, i, j], rn[ch, i, j]
                d = xv + rnv
                m = d + a * rbv
                vm = max(ac * m + bc, zero) + eps
                vd = max(ac * d + bc, zero) + eps
                k = np.sqrt(vm / vd)
                out[ch, i, j] = xv + a * rbv + rnv * (one - (one - b) * k)


def compose_consistent_fast(
    x, r_blur, r_noise, a: float, b: float, A, B, out: np.ndarray | None = None
) -> np.ndarray:
    """Same numbers as :func:`compose_consistent`, in one fused parallel pass (the slider path)."""
    a, b = np.float32(check_strength("blur", a)), np.float32(check_strength("noise", b))
    if out is None:
        out = np.empty_like(x)
    _consistent_kernel(
        x, r_blur, r_noise, a, b, np.asarray(A, np.float32), np.asarray(B, np.float32), out
    )
    return out


def compose(mode: str, x, r_blur, r_noise, a: float, b: float, A, B) -> np.ndarray:
    require(mode in MODES, f"mode = {mode!r}: use one of {MODES}")
    if mode == "consistent":
        return compose_consistent_fast(x, r_blur, r_noise, a, b, A, B)
    return compose_literal(x, r_blur, r_noise, a, b, A, B)
