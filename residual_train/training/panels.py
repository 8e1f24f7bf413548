"""Image panels of validation samples: input, residuals and corrected outputs."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from data_gen.preview import to_rgb8
from data_gen.sources import linear_to_srgb


def residual_panel(batch: dict, scale: int = 2) -> Image.Image:
    """Rows = samples; columns = input, predicted residuals, corrected outputs, clean.

    ``batch``: tensors ``x``, ``clean`` and ``pred`` (dict head -> residual), on CPU.
    Images go through the sRGB curve; residuals are shown as 0.5 + R / (2 max|R|).
    """
    x = batch["x"].float().numpy()
    pred = {k: v.float().numpy() for k, v in batch["pred"].items()}
    cols: list[tuple[str, np.ndarray, bool]] = [("input", x, False)]
    cols += [(f"R_{k}", v, True) for k, v in pred.items()]
    cols += [(f"x+R_{k}", x + v, False) for k, v in pred.items()]
    if len(pred) > 1:
        cols.append(("full", x + sum(pred.values()), False))
    cols.append(("clean", batch["clean"].float().numpy(), False))
    n, p = x.shape[0], x.shape[-1] * scale
    pad, head = 4, 16
    sheet = Image.new("RGB", (len(cols) * (p + pad), head + n * (p + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (name, arr, residual) in enumerate(cols):
        draw.text((j * (p + pad) + 2, 2), name, fill="black")
        for i in range(n):
            a = arr[i]
            vis = (
                0.5 + a / (2 * max(float(np.abs(a).max()), 1e-6)) if residual else linear_to_srgb(a)
            )
            im = Image.fromarray(to_rgb8(vis)).resize((p, p), Image.Resampling.NEAREST)
            sheet.paste(im, (j * (p + pad), head + i * (p + pad)))
    return sheet
