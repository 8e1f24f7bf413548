"""Measures of a correction against the rendering's ground truth (arrays ``(C, H, W)``,
linear, data range 1 = white level)."""

from __future__ import annotations

import numpy as np

from data_gen.noise import NoiseModel
from residual_train.evaluate.baselines import psnr

__all__ = ["BRIGHTNESS_EDGES", "NoiseKept", "Pearson", "error_bands", "psnr", "ssim"]

# brightness bins of the sharp image for the noise-kept measure (linear; 0 = black)
BRIGHTNESS_EDGES = (0.0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0)


# orthonormal opponent colours: luma, red − blue, green − (red + blue)/2
_OPPONENT = np.array([[1, 1, 1], [1, 0, -1], [-1, 2, -1]], np.float64) / np.sqrt(
    [[3.0], [2.0], [6.0]]
)
BAND_CUTOFF = 1 / 16  # cycles per pixel: "low" = periods longer than 16 px


def error_bands(y: np.ndarray, clean: np.ndarray, cutoff: float = BAND_CUTOFF) -> dict:
    """Where an output's error lies: its mean squared error split into luma / chroma and
    low / high spatial frequency, each part as a PSNR in dB (data range 1).

    ``y``, ``clean`` ``(C, H, W)``. Colour (C = 3) is turned into orthonormal opponent
    channels ``Y`` (luma), ``C1`` (red − blue), ``C2`` (green − magenta); other C keep their
    channels (``ch0`` …). ``low`` holds the error's frequencies below ``cutoff`` cycles per
    pixel (radially, the blotches of a denoiser: periods over 16 px by default), ``high``
    the rest. The split is exact (orthonormal colours, Parseval over the periodic FFT), so
    the six parts' mean squared errors add up to the image's: ``psnr = −10·log10(Σ
    10^(−band/10))`` (a part with no error at all reads 120 dB, :func:`psnr`'s floor).
    Keys ``low_Y`` … ``high_C2``."""
    e = np.asarray(y, np.float64) - np.asarray(clean, np.float64)
    c, h, w = e.shape
    names = ("Y", "C1", "C2") if c == 3 else tuple(f"ch{i}" for i in range(c))
    basis = _OPPONENT if c == 3 else np.eye(c)
    half = np.full(w // 2 + 1, 2.0)  # rfft2 holds each column pair once
    half[0] = 1.0
    if w % 2 == 0:
        half[-1] = 1.0
    # each frequency's share of the squared error, per channel (sums to Σ e² / (C·H·W))
    power = np.abs(np.fft.rfft2(np.tensordot(basis, e, 1))) ** 2 * half / ((h * w) * (c * h * w))
    low = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]) < cutoff
    out = {}
    for band, mask in (("low", low), ("high", ~low)):
        for i, name in enumerate(names):
            mse = float(power[i][mask].sum())
            out[f"{band}_{name}"] = float(-10 * np.log10(max(mse, 1e-12)))
    return out


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SSIM of the images clipped to [0, 1] (scikit-image, colour, data range 1); with
    ``mask`` ``(H, W)`` bool, the mean of the SSIM map over those pixels."""
    from skimage.metrics import structural_similarity

    a, b = np.clip(a, 0, 1), np.clip(b, 0, 1)
    if mask is None:
        return float(structural_similarity(a, b, channel_axis=0, data_range=1.0))
    _, smap = structural_similarity(a, b, channel_axis=0, data_range=1.0, full=True)
    return float(smap.mean(axis=0)[mask].mean())


class Pearson:
    """Running Pearson correlation and std ratio of an estimate against a reference."""

    def __init__(self) -> None:
        self.s = np.zeros(6)  # n, Σe, Σr, Σe², Σr², Σe·r

    def add(self, est: np.ndarray, ref: np.ndarray) -> Pearson:
        e, r = est.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
        self.s += [e.size, e.sum(), r.sum(), e @ e, r @ r, e @ r]
        return self

    def __iadd__(self, other: Pearson) -> Pearson:
        self.s += other.s
        return self

    def _moments(self) -> tuple[float, float, float]:
        n, se, sr, see, srr, ser = self.s
        ve, vr = see / n - (se / n) ** 2, srr / n - (sr / n) ** 2
        return ve, vr, ser / n - se * sr / n**2

    @property
    def corr(self) -> float:
        ve, vr, c = self._moments()
        return float(c / np.sqrt(max(ve * vr, 1e-300)))

    @property
    def std_ratio(self) -> float:
        ve, vr, _ = self._moments()
        return float(np.sqrt(ve / max(vr, 1e-300)))


class NoiseKept:
    """Noise an output keeps, binned by the brightness of the sharp scene ``S``, against
    the sensor model ``σ(S)`` of a camera that had captured ``S`` directly.

    Per bin: pixel count, mean σ²(S), mean squared kept noise; ``ratio`` = std of the kept
    noise / rms σ(S) (1 = exactly the camera's noise level at that brightness).
    """

    def __init__(self, edges=BRIGHTNESS_EDGES) -> None:
        self.edges = np.asarray(edges, np.float64)
        self.s = np.zeros((len(self.edges) - 1, 3))  # n, Σσ², Σkept²

    def add(self, kept: np.ndarray, sharp: np.ndarray, noise: NoiseModel) -> NoiseKept:
        var = noise.variance(sharp).astype(np.float64).ravel()
        s = sharp.astype(np.float64).ravel()
        k = kept.astype(np.float64).ravel()
        b = np.clip(np.searchsorted(self.edges, s, side="right") - 1, 0, len(self.edges) - 2)
        self.s[:, 0] += np.bincount(b, minlength=len(self.s))
        self.s[:, 1] += np.bincount(b, var, minlength=len(self.s))
        self.s[:, 2] += np.bincount(b, k * k, minlength=len(self.s))
        return self

    def __iadd__(self, other: NoiseKept) -> NoiseKept:
        self.s += other.s
        return self

    def rows(self, min_pixels: int = 5000) -> list[dict]:
        out = []
        for i, (n, sv, sk) in enumerate(self.s):
            if n == 0:
                continue
            model, kept = np.sqrt(sv / n), np.sqrt(sk / n)
            out.append(
                {
                    "lo": float(self.edges[i]),
                    "hi": float(self.edges[i + 1]),
                    "pixels": int(n),
                    "sigma_model": float(model),
                    "sigma_kept": float(kept),
                    "ratio": float(kept / model),
                    "enough": bool(n >= min_pixels),
                }
            )
        return out

    @staticmethod
    def worst(rows: list[dict]) -> float | None:
        """Largest |ratio − 1| over the bins with enough pixels."""
        dev = [abs(r["ratio"] - 1) for r in rows if r["enough"]]
        return max(dev) if dev else None
