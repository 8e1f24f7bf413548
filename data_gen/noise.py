"""The sensor noise model (docs/design.md §1), written once: ``σ²(v) = A·max(v, 0) + B`` per channel.

``v`` is a signal in normalised linear units (0 = black level, 1 = white level); ``A``
(shot-noise slope) and ``B`` (dark + read variance) are per channel at the image's ISO.
The signal is never below black (negative values are noise), so ``σ² ≥ B``.

:class:`NoiseModel` is the one object that the renderer, the training loader (σ map,
σ-unit losses), deployment, every composition mode, the report and the evaluation use.
It works unchanged on numpy arrays and torch tensors; the compiled composition kernel
calls :data:`variance_scalar`, the same formula compiled by numba.
"""

from __future__ import annotations

import numba
import numpy as np

from data_gen.core.errors import require


def at_iso(iso: float, isos, values) -> np.ndarray:
    """A per-ISO table's values at ``iso``: ``values`` ``(n, C)`` at the increasing ``isos``
    ``(n,)`` -> ``(C,)`` float64, linear in ISO between the rows (the end rows beyond them).
    The one rule of every noise table: darktable profiles, calibrated sensors, the noise
    kinds' tables and the model card's (``residual_train.release.card.NoiseTable``)."""
    values = np.asarray(values, np.float64)
    return np.array([np.interp(iso, isos, values[:, c]) for c in range(values.shape[1])])


# guards σ → 0 when B = 0 (darktable profiles clamped at b = 0): k = sqrt((σ²(m)+ε)/(σ²(d)+ε))
EPS = 1e-12


def variance(v, A, B):
    """``σ²(v) = A·max(v, 0) + B``, element-wise.

    ``max(v, 0)`` is spelled ``(v + |v|)·0.5``: exact in floating point, and the same
    expression on numpy arrays, torch tensors and numba scalars, so the formula exists once.
    """
    return A * ((v + abs(v)) * 0.5) + B


# the formula for scalars inside compiled kernels (computed in float64, returned as float32)
variance_scalar = numba.njit("float32(float32, float32, float32)", cache=True)(variance)


def is_torch(v) -> bool:
    """Whether ``v`` is a torch tensor (without importing torch)."""
    return type(v).__module__.startswith("torch")


class NoiseModel:
    """Per-channel Poisson-Gaussian noise level ``σ²(v) = A·max(v, 0) + B``.

    ``A``, ``B``: ``(C,)`` for one image, or ``(N, C)`` for a batch of ``N`` samples, in
    normalised units. Signals are ``(..., C, H, W)`` numpy arrays or torch tensors (the
    parameters follow the signal's device and dtype).
    """

    def __init__(self, A, B) -> None:
        if is_torch(A):  # a batch's parameters on the training device stay there
            ok = bool(((A >= 0) & (B >= 0) & A.isfinite() & B.isfinite()).all())
        else:
            A, B = np.asarray(A, np.float32), np.asarray(B, np.float32)
            ok = bool(np.isfinite(A).all() and np.isfinite(B).all())
            ok = ok and bool((A >= 0).all() and (B >= 0).all())
        require(
            tuple(A.shape) == tuple(B.shape) and A.ndim in (1, 2),
            f"noise model: A {tuple(A.shape)} and B {tuple(B.shape)} must both be (C,) or (N, C)",
        )
        require(ok, f"noise model: A = {A.tolist()}, B = {B.tolist()} must be finite and >= 0")
        self.A, self.B = A, B

    @property
    def channels(self) -> int:
        return int(self.A.shape[-1])

    def __repr__(self) -> str:
        return f"NoiseModel(A={self.A.tolist()}, B={self.B.tolist()})"

    def _params(self, v):
        """``A``, ``B`` shaped to broadcast against ``(..., C, H, W)`` signals like ``v``."""
        A, B = self.A[..., None, None], self.B[..., None, None]
        if is_torch(v):
            import torch

            return (
                torch.as_tensor(A).to(dtype=v.dtype, device=v.device),
                torch.as_tensor(B).to(dtype=v.dtype, device=v.device),
            )
        return A, B

    def variance(self, v):
        """``σ²(v)``, same shape and type as ``v``."""
        A, B = self._params(v)
        return variance(v, A, B)

    def std(self, v):
        """``σ(v) ≥ √B``, same shape and type as ``v``."""
        s2 = self.variance(v)
        return s2.sqrt() if is_torch(v) else np.sqrt(s2)

    def shot(self, v):
        """σ of the signal-dependent part alone, ``√(A·max(v, 0))`` (the noise kinds that
        draw the signal-independent part otherwise), same shape and type as ``v``."""
        A, _ = self._params(v)
        s2 = variance(v, A, 0.0)
        return s2.sqrt() if is_torch(v) else np.sqrt(s2)

    def sample(self, signal, normal):
        """One noise realisation ``σ(signal)·r`` for standard normals ``r`` (same shape and
        type: numpy arrays or torch tensors)."""
        return self.std(signal) * normal

    def ratio(self, after, before):
        """``k = σ(after) / σ(before)``: how much noise a camera makes at ``after`` relative
        to ``before`` (docs/design.md §4).

        Both signals are first clipped to the sensor's range [0, 1] (black .. white): no
        pixel of a real capture lies outside it, so an estimate that dips below black or
        overshoots white cannot inflate ``k``. Hence ``1/k_max ≤ k ≤ k_max`` with
        ``k_max = σ(1)/σ(0) = sqrt((A + B)/B)``. Equal inputs give exactly 1.
        """
        a, b = after.clip(0, 1), before.clip(0, 1)
        r = (self.variance(a) + EPS) / (self.variance(b) + EPS)
        return r.sqrt() if is_torch(r) else np.sqrt(r)

    @property
    def k_max(self) -> np.ndarray:
        """Largest ratio :meth:`ratio` can return, per channel: ``σ(1)/σ(0)`` (with ε)."""
        A, B = np.asarray(self.A, np.float32), np.asarray(self.B, np.float32)
        one, zero = np.ones_like(A), np.zeros_like(A)
        return np.sqrt((variance(one, A, B) + EPS) / (variance(zero, A, B) + EPS))

    def __getitem__(self, i: int) -> NoiseModel:
        """Sample ``i`` of a batch model."""
        require(self.A.ndim == 2, "noise model: indexing needs a batch model (N, C)")
        return NoiseModel(self.A[i], self.B[i])
