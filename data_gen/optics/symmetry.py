"""The eight symmetries of the square (flips and quarter turns) and the ones a lens has.

A flip or rotation of a training patch also flips or rotates the blur in it:
``T(psf ⊛ S) = T(psf) ⊛ T(S)``. Augmenting with ``T`` therefore shows the network a lens
whose PSF is ``T(psf)``. That is harmless only where the lens has that PSF somewhere in its
bank (a rotationally symmetric lens rotated by 90° is itself, at another azimuth);
otherwise it teaches the network to undo blurs the camera never makes (a lens with coma
along x, flipped left-right, has coma along −x). :func:`bank_symmetries` finds the
transforms under which a bank maps onto itself.

Transform ``t`` in 0..7: mirror the last axis when ``t >= 4``, then turn by ``t % 4``
quarter turns (numpy's ``rot90`` on the last two axes). 0 is the identity.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

NAMES = ("identity", "rot90", "rot180", "rot270", "flip-x", "transpose", "flip-y", "antitranspose")
ALL = tuple(range(8))
INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)  # the transform that undoes each (a reflection undoes itself)
GEOMETRIC = ("lens", "all", "none")  # data.geometric: what training augments with


def dihedral(a, t: int):
    """Transform ``t`` (0..7) of ``a`` ``(..., H, W)`` on its last two axes: a numpy view,
    or a new torch tensor (torch has no negative strides)."""
    if not 0 <= t < 8:
        raise ValueError(f"dihedral transform {t}: expected 0..7")
    if type(a).__module__.startswith("torch"):
        import torch

        return torch.rot90(a.flip(-1) if t >= 4 else a, t % 4, dims=(-2, -1))
    if t >= 4:
        a = a[..., ::-1]
    return np.rot90(a, t % 4, axes=(-2, -1))


def bank_symmetries(psfs: np.ndarray, tol: float = 0.02) -> tuple[int, ...]:
    """Transforms under which the bank ``psfs`` ``(N, C, K, K)`` maps onto itself.

    ``t`` is kept when every transformed PSF is within ``tol`` (relative L1 distance; PSFs
    sum to 1 per channel) of some PSF of the bank. Always contains 0 (the identity).
    """
    p = np.asarray(psfs, np.float64)
    if p.ndim != 4 or p.shape[-1] != p.shape[-2]:
        raise ValueError(f"PSF bank of shape {p.shape}: expected (N, C, K, K)")
    flat = p.reshape(len(p), -1)
    norm = np.abs(flat).sum(1).max()
    keep = []
    for t in ALL:
        q = np.ascontiguousarray(dihedral(p, t)).reshape(len(p), -1)
        # distance of each transformed PSF to its nearest bank PSF (a chunked all-pairs L1)
        worst, step = 0.0, max(1, int(2e7 // flat.size))  # ~160 MB per chunk at most
        for i in range(0, len(q), step):
            d = np.abs(q[i : i + step, None, :] - flat[None, :, :]).sum(-1).min(1)
            worst = max(worst, float(d.max()))
        if worst <= tol * norm:
            keep.append(t)
    return tuple(keep)


def kept_bank_symmetries(psfs: np.ndarray, cache: str | Path | None) -> tuple[int, ...]:
    """:func:`bank_symmetries`, kept in the folder ``cache`` under the bank's sha256 (a
    measured bank of hundreds of PSFs takes seconds, at every load of a model); ``None``:
    computed. A cache file that cannot be read is computed again and rewritten."""
    if cache is None:
        return bank_symmetries(psfs)
    from data_gen.core.paths import written_atomically

    p = np.ascontiguousarray(psfs)
    h = hashlib.sha256(f"{p.dtype.str}{p.shape}".encode())
    h.update(p.tobytes())
    path = Path(cache).expanduser() / f"symmetries-{h.hexdigest()[:24]}.json"
    try:
        got = json.loads(path.read_text())["symmetries"]
        if got[:1] == [0] and all(t in ALL for t in got):
            return tuple(int(t) for t in got)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    out = bank_symmetries(p)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with written_atomically(path) as tmp:
            tmp.write_text(json.dumps({"symmetries": list(out)}))
    except OSError:
        pass  # a read-only cache only costs the time
    return out


def augmentation_transforms(
    geometric: str, psfs: np.ndarray | None = None, cache: str | Path | None = None
) -> tuple[int, ...]:
    """The transforms training augments RGB patches with for ``data.geometric``: ``all`` the
    eight of the square, ``none`` the identity, ``lens`` :func:`bank_symmetries` of the bank
    ``psfs`` ``(N, C, K, K)`` it renders with (what a model trained so has seen; kept in the
    folder ``cache`` when given: :func:`kept_bank_symmetries`)."""
    if geometric not in GEOMETRIC:
        raise ValueError(f"geometric = {geometric!r}: expected one of {', '.join(GEOMETRIC)}")
    if geometric == "all":
        return ALL
    if geometric == "none":
        return (0,)
    if psfs is None:
        raise ValueError("geometric = lens needs the PSF bank")
    return kept_bank_symmetries(psfs, cache)


def transform_index(psfs: np.ndarray, t: int) -> np.ndarray:
    """``(N,)``: for each bank PSF ``j``, the index of the bank PSF nearest (L1) to its
    transform ``t``: the PSF a patch rendered with ``psfs[j]`` shows after transform ``t``
    (for ``t`` among :func:`bank_symmetries`, within its tolerance)."""
    p = np.asarray(psfs, np.float64)
    if t == 0:
        return np.arange(len(p))
    flat = p.reshape(len(p), -1)
    q = np.ascontiguousarray(dihedral(p, t)).reshape(len(p), -1)
    out = np.empty(len(p), np.int64)
    step = max(1, int(2e7 // flat.size))
    for i in range(0, len(q), step):
        out[i : i + step] = np.abs(q[i : i + step, None, :] - flat[None, :, :]).sum(-1).argmin(1)
    return out


def transform_table(psfs: np.ndarray, transforms) -> np.ndarray:
    """``(8, N)`` int64: row ``t`` is :func:`transform_index` of the bank ``psfs`` for each
    ``t`` of ``transforms`` and for the identity; −1 in the rows of the other transforms."""
    perm = np.full((8, len(psfs)), -1, np.int64)
    for t in transforms:
        perm[t] = transform_index(psfs, int(t))
    perm[0] = np.arange(len(psfs))
    return perm
