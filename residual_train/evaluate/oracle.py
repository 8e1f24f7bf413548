"""Oracle choices: a baseline's free parameter picked per image with the clean image as
judge (which favours the baseline; its results are labelled *oracle*).

Arrays ``(C, H, W)`` linear float, data range 1 (white level); ``mask`` ``(H, W)`` bool,
the pixels that count (e.g. those with a valid depth), default all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB for data range 1 (white level), over ``mask`` when given."""
    d = (a - b) ** 2
    if mask is not None:
        d = d[..., mask]
    return float(-10 * np.log10(max(float(np.mean(d)), 1e-12)))


def choose(
    make: Callable[[T], np.ndarray],
    options: Iterable[T],
    clean: np.ndarray,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, T, float]:
    """``(image, option, psnr)``: the candidate ``make(option)`` closest to ``clean`` (the
    first on a tie)."""
    best, best_o, best_p = None, None, -np.inf
    for o in options:
        y = make(o)
        p = psnr(y, clean, mask)
        if p > best_p:
            best, best_o, best_p = y, o, p
    return best, best_o, best_p


def oracle_scale(y: np.ndarray, clean: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The global factor ``c`` minimising ``‖c·y − clean‖²`` (over ``mask``): the closed-form
    oracle choice of an overall brightness."""
    a, b = (y, clean) if mask is None else (y[..., mask], clean[..., mask])
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / max(float(a @ a), 1e-300))
