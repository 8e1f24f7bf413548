"""``python -m data_gen.preview DIR out=FILE.png [n=6] [shard=0] [gain=1]``: contact sheet.

One row per sample: clean | blur | noise | noise_blur | R_b = noise − noise_blur |
R_n = blur − noise_blur (schema v2: clean | input | the peeling residual ``R_<c>`` of each
component). Images are shown through the sRGB curve; residuals as
0.5 + gain·R/(2·max|R|) per map, grey = 0.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageDraw

from data_gen.chain import stored_residuals
from data_gen.core.cli import run_app
from data_gen.core.errors import require
from data_gen.core.paths import CONF
from data_gen.core.values import integer, number
from data_gen.render import PATCHES
from data_gen.shards import patch_names, read_manifest, shard_components
from data_gen.sources import linear_to_srgb

COLUMNS = (*PATCHES, "R_b", "R_n")


def to_rgb8(x: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] -> ``(H, W, 3)`` uint8. Four channels are packed Bayer
    planes R, Gr, Gb, B (shown as half-resolution RGB); other counts as their mean."""
    if x.shape[0] == 4:
        from data_gen.cfa import superpixel_rgb

        x = superpixel_rgb(x)
    elif x.shape[0] != 3:
        x = np.repeat(x.mean(axis=0, keepdims=True), 3, axis=0)
    return (np.clip(x, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def contact_sheet(
    data_dir: Path, n: int = 6, shard: int = 0, scale: int = 2, gain: float = 1.0
) -> Image.Image:
    """Build the sheet from the first ``n`` samples of shard ``shard``."""
    require(n >= 1, f"n = {n}: the number of samples to show must be >= 1")
    require(scale >= 1, f"scale = {scale}: the pixel magnification must be >= 1")
    shards = read_manifest(data_dir).shards
    require(
        0 <= shard < len(shards),
        f"shard = {shard}: the dataset has shards 0..{len(shards) - 1}",
    )
    path = data_dir / shards[shard].name
    with h5py.File(path, "r") as f:
        k = min(n, f["clean"].shape[0])
        arr = {name: f[name][:k].astype(np.float32) for name in patch_names(f)}
        meta = f["meta"][:k]
        comps = shard_components(f)
    if "noise_blur" in arr:
        columns = COLUMNS
        arr["R_b"] = arr["noise"] - arr["noise_blur"]
        arr["R_n"] = arr["blur"] - arr["noise_blur"]
    else:
        res = stored_residuals(arr, comps)
        arr.update({f"R_{c}": v for c, v in res.items()})
        columns = ("clean", "input", *(f"R_{c}" for c in comps))
    p = arr["clean"].shape[-1] * scale
    pad, head, left = 4, 18, 110
    sheet = Image.new("RGB", (left + len(columns) * (p + pad), head + k * (p + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(columns):
        draw.text((left + j * (p + pad) + 2, 3), name, fill="black")
    for i in range(k):
        y = head + i * (p + pad)
        draw.text((4, y + 2), f"#{i} ISO {meta['iso'][i]:.0f}", fill="black")
        draw.text((4, y + 16), f"exp {meta['exposure'][i]:.2f}", fill="black")
        for j, name in enumerate(columns):
            x = arr[name][i]
            if name.startswith("R_"):
                peak = max(float(np.abs(x).max()), 1e-6)
                vis = 0.5 + gain * x / (2 * peak)
            else:
                vis = linear_to_srgb(x)
            im = Image.fromarray(to_rgb8(vis)).resize((p, p), Image.Resampling.NEAREST)
            sheet.paste(im, (left + j * (p + pad), y))
    return sheet


def run(cfg: dict) -> dict:
    sheet = contact_sheet(
        Path(str(cfg["dir"])),
        integer(cfg["n"], "n"),
        integer(cfg["shard"], "shard"),
        integer(cfg["scale"], "scale"),
        number(cfg["gain"], "gain", positive=True),
    )
    out = Path(str(cfg["out"]))
    require(
        out.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"),
        f"out = {str(out)!r}: name an image file (.png, .jpg, .tif or .webp)",
    )
    require(not out.is_dir(), f"out = {str(out)!r} is a directory; name an image file")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return {"preview": str(out), "size": [sheet.width, sheet.height]}


def main() -> None:
    run_app(CONF, "preview", run, words={"dir": "*"})


if __name__ == "__main__":
    main()
