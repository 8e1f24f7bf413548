"""How many eigen-kernels does a lens need? The position-aware deconvolution
(``model.field_kernels=K``, docs/design.md §5) approximates the Wiener inverse of every bank
PSF by the mean PSF's inverse plus ``K`` eigen-kernels (residual_train/models/field.py).
This measures, on a dataset's shards, what that approximation costs before any training:

    python scripts/field_rank.py SHARDS_DIR [K ...]      # e.g. runs/field/val 8 16 32

For each ``K``: the median relative error of the approximated kernels over the bank, and the
mean PSNR against ``clean`` of the noise-free blurred patches (``blur``) deconvolved with
the approximated inverse of each patch's own PSF (``meta.psf_index``), beside the mean-PSF
inverse (``K = 0``) and the exact per-PSF inverse; 12-pixel borders left out. One JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np

from data_gen.optics import inverse_filter
from data_gen.physics.convolve import blur_image
from residual_train.evaluate.oracle import psnr as psnr_of
from residual_train.models.field import eigen_kernels

SIZE, BALANCE, BORDER, PATCHES = 21, 1e-3, 12, 256


def psnr(kernels: np.ndarray, blur: np.ndarray, clean: np.ndarray, index: np.ndarray) -> float:
    """Mean PSNR (dB) of ``blur`` ``(N, C, P, P)`` deconvolved by ``kernels[index]``, the
    ``BORDER`` (wider than the kernels' radius: no padding reaches it) left out."""
    b = np.s_[:, BORDER:-BORDER, BORDER:-BORDER]
    return float(
        np.mean(
            [
                psnr_of(blur_image(x, kernels[j])[b], s[b])
                for x, s, j in zip(blur, clean, index, strict=True)
            ]
        )
    )


def main(shards: Path, ks: list[int]) -> dict:
    with h5py.File(sorted(shards.glob("shard-*.h5"))[0], "r") as f:
        psfs = f["psfs"][:].astype(np.float64)
        blur = f["blur"][:PATCHES].astype(np.float64)
        clean = f["clean"][:PATCHES].astype(np.float64)
        index = f["meta"]["psf_index"][:PATCHES]
    exact = np.stack([inverse_filter(p, SIZE, BALANCE) for p in psfs]).astype(np.float64)
    norm = np.linalg.norm(exact.reshape(len(psfs), -1), axis=1)
    identity = np.zeros_like(exact)
    identity[:, :, SIZE // 2, SIZE // 2] = 1
    rows = {}
    for k in [0, *ks]:
        base, eigen, table = eigen_kernels(psfs, SIZE, BALANCE, k)
        approx = base + np.tensordot(table, eigen, 1)  # (N, C, S, S); K = 0: the mean path
        rel = np.linalg.norm((approx - exact).reshape(len(psfs), -1), axis=1) / norm
        rows[k] = {
            "kernel_rel_error_median": round(float(np.median(rel)), 4),
            "psnr": round(psnr(approx, blur, clean, index), 2),
        }
    return {
        "shards": str(shards),
        "bank": len(psfs),
        "patches": len(blur),
        "input_psnr": round(psnr(identity, blur, clean, index), 2),
        "by_kernels": rows,
        "exact_psnr": round(psnr(exact, blur, clean, index), 2),
    }


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(json.dumps(main(Path(sys.argv[1]), [int(k) for k in sys.argv[2:]] or [8, 16, 32])))
