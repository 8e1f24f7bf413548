"""A PSF atlas: a lens's PSFs laid out over the frame, one panel per channel.

Each PSF is drawn at its position (cell centres of a rows × columns layout) scaled
to its own peak, on a log (``decades`` below the peak) or gamma scale, so the shape
and orientation of faint aberration tails are visible; a last panel overlays the
channels in colour (lateral spread differences show as coloured fringes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from data_gen.core.errors import require
from data_gen.optics.bank import FieldBank, PSFBank


def tone(
    psf: np.ndarray, scale: str = "log", decades: float = 3.0, gamma: float = 0.4
) -> np.ndarray:
    """PSF ``(..., K, K)`` -> display values in [0, 1], relative to its own peak."""
    require(scale in ("log", "gamma"), f"scale = {scale!r}: use 'log' or 'gamma'")
    require(decades > 0 and gamma > 0, "decades and gamma must be > 0")
    peak = psf.max(axis=(-2, -1), keepdims=True)
    rel = np.clip(psf / np.where(peak > 0, peak, 1), 0, 1)
    if scale == "log":
        return np.clip(1 + np.log10(np.maximum(rel, 1e-30)) / decades, 0, 1)
    return rel**gamma


def atlas_image(
    bank: PSFBank,
    state: int = 0,
    points: tuple[int, int] = (5, 7),
    zoom: int = 3,
    scale: str = "log",
    decades: float = 3.0,
    gamma: float = 0.4,
    labels: list[str] | None = None,
) -> np.ndarray:
    """``(H, W, 3)`` uint8 atlas: panels per channel side by side, then the colour overlay."""
    rows, cols = points
    require(rows >= 1 and cols >= 1 and zoom >= 1, "points and zoom must be >= 1")
    c, k = bank.channels, bank.size
    cell, gap, title = k * zoom, max(2, zoom), 14
    ph, pw = rows * (cell + gap) + gap, cols * (cell + gap) + gap
    panels = np.zeros((c, ph, pw), np.float32)
    for i in range(rows):
        for j in range(cols):
            fy, fx = (i + 0.5) / rows, (j + 0.5) / cols
            idx = bank.index_at(fy, fx, state) if isinstance(bank, FieldBank) else 0
            t = tone(bank.psfs[idx], scale, decades, gamma)
            big = np.kron(t, np.ones((zoom, zoom), np.float32))
            y0, x0 = gap + i * (cell + gap), gap + j * (cell + gap)
            panels[:, y0 : y0 + cell, x0 : x0 + cell] = big
    grey = [np.repeat(p[..., None], 3, axis=2) for p in panels]
    colour = np.zeros((ph, pw, 3), np.float32)
    if c == 3:
        colour = np.moveaxis(panels, 0, -1)
    else:
        colour[...] = panels.mean(axis=0)[..., None]
    strip = np.concatenate(
        [np.pad(g, ((title, 0), (0, gap), (0, 0)), constant_values=0.15) for g in [*grey, colour]],
        axis=1,
    )
    img = Image.fromarray((strip * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    names = [*(labels or [f"channel {i}" for i in range(c)]), "overlay"]
    for n, name in enumerate(names):
        draw.text((n * (pw + gap) + 2, 1), name, fill=(255, 255, 255))
    return np.asarray(img)


def write_atlas(path: str | Path, image: np.ndarray, info: dict[str, str]) -> Path:
    """Save the atlas PNG (temp name, then rename) with ``info`` as PNG text chunks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = PngInfo()
    for k, v in info.items():
        meta.add_text(k, v)
    tmp = path.with_name(f"{path.name}.tmp.png")
    Image.fromarray(image).save(tmp, pnginfo=meta)
    tmp.replace(path)
    return path
