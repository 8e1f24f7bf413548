"""The demo's HTML report (one file + PNGs, no server): what ran, how training went, and
the evaluations of :mod:`residual_train.evaluate` for each model, side by side.

Evaluation (numbers) lives in :mod:`residual_train.evaluate.run`, its page in
:mod:`residual_train.evaluate.page`; this module only lays them out with the training
curves, a strengths grid and the lens's PSF.
"""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from residual_train.deploy.compose import compose_blur_noise
from residual_train.evaluate.page import CSS, img_tag, save_image, table, write_page

STRENGTHS = (0.0, 0.5, 1.0)


def _curves(run_dir: Path, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader((run_dir / "logs" / "metrics.csv").open()))
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    tr = [(int(r["step"]), float(r["train/loss"])) for r in rows if r.get("train/loss")]
    if tr:
        ax[0].plot(*zip(*tr, strict=True), lw=0.8)
    ax[0].set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    for key in ("psnr_full", "psnr_blur", "psnr_noise"):
        pts = [(int(r["step"]), float(r[f"val/{key}"])) for r in rows if r.get(f"val/{key}")]
        inp = [
            (int(r["step"]), float(r[f"val/{key}_input"]))
            for r in rows
            if r.get(f"val/{key}_input")
        ]
        if pts:
            line = ax[1].plot(*zip(*pts, strict=True), "-", marker="o", label=key)[0]
            ax[1].plot(*zip(*inp, strict=True), ":", color=line.get_color(), label=f"{key} (input)")
    ax[1].set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR per component")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)
    plt.close(fig)
    return "curves.png"


def _psf_atlas(psf: np.ndarray, out: Path) -> str:
    """``psf`` ``(C, K, K)``: one panel per channel, gamma 0.5, 8x zoom."""
    tiles = []
    for c in range(psf.shape[0]):
        p = psf[c] / psf[c].max()
        tiles.append(np.repeat(np.repeat(p**0.5, 8, 0), 8, 1))
    pad = np.ones((tiles[0].shape[0], 8))
    row = np.concatenate(
        [t if i == 0 else np.concatenate([pad, t], 1) for i, t in enumerate(tiles)], 1
    )
    Image.fromarray((np.clip(row, 0, 1) * 255).astype(np.uint8)).save(out / "psf_atlas.png")
    return "psf_atlas.png"


def _strengths_grid(result: dict, out: Path) -> tuple[str, list]:
    """Nine compositions of one image's maps (one network pass): rows b, columns a."""
    name, by_iso = next(iter(result["arrays"].items()))
    isos = sorted(by_iso)
    iso = isos[len(isos) // 2]
    v = by_iso[iso]
    x = v["noise_blur"]
    s = min(128, *x.shape[1:])
    y0, x0 = (x.shape[1] - s) // 2, (x.shape[2] - s) // 2
    crop = [
        np.ascontiguousarray(a[:, y0 : y0 + s, x0 : x0 + s]) for a in (x, v["R_blur"], v["R_noise"])
    ]
    rows = []
    for b in STRENGTHS:
        cells = []
        for a in STRENGTHS:
            y = compose_blur_noise(*crop, a, b, v["noise"])
            cells.append(save_image(y, out / f"grid_a{a:g}_b{b:g}.png", scale=2))
        rows.append((b, cells))
    return f"{name}, ISO {iso:g}", rows


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def write_report(
    out: Path,
    info: dict,
    data_cfg: dict,
    train_cfg: dict,
    run_dir: Path,
    evaluations: dict[str, dict],
    psf: np.ndarray,
) -> Path:
    """``out/index.html``; each evaluation also gets its own page in ``out/<label>/``."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    curves = _curves(run_dir, out)
    atlas = _psf_atlas(psf, out)
    t = info["timings_s"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>residual-train demo</title>"
        f"<style>{CSS}</style></head><body>",
        "<h1>residual-train demo</h1>",
        "<p>A dual-head network predicts a blur residual and a noise residual from one "
        "blurred, noisy image; each component is then corrected at its own strength, and the "
        "noise residual is rescaled by the brightness change the blur correction caused "
        "(docs/design.md).</p>",
        "<h2>What was run</h2>",
        table(
            [{"stage": k, "seconds": float(val)} for k, val in t.items()],
            ["stage", "seconds"],
            "{:.1f}",
        ),
        table(
            [
                {"key": k, "value": json.dumps(val) if isinstance(val, dict) else str(val)}
                for k, val in {
                    **info["versions"],
                    **info["hardware"],
                    "python": info["python"],
                    "published model": info["published"],
                    "training result": info["training"],
                }.items()
            ],
            ["key", "value"],
        ),
        "<details><summary>generator config</summary><pre>"
        + html.escape(yaml.safe_dump(data_cfg, sort_keys=False))
        + "</pre></details>",
        "<details><summary>training config</summary><pre>"
        + html.escape(yaml.safe_dump(train_cfg, sort_keys=False))
        + "</pre></details>",
        "<h2>Training of the quick model</h2>",
        img_tag(curves, "training curves"),
        "<h2>Quality on real photographs</h2>",
        "<p>Photographs the models never saw, rendered through the model's lens and sensor "
        "(every pixel blurred with the PSF of its position, one noise realisation per image "
        "and ISO). PSNR (dB) against the clean image, linear, mean over images; <i>model</i> = "
        "full correction (a = b = 1). <i>wiener_wavelet</i>: Wiener deconvolution with the "
        "true PSF, then wavelet denoising; <i>bm3d_wiener</i>: BM3D on the "
        "variance-stabilised image with the known sensor model, then Wiener deconvolution "
        "with the true PSF; both choose their regularisation with the clean image as oracle.</p>",
    ]
    for label, res in evaluations.items():
        slug = _slug(label)
        page = write_page(res, out / slug, title=f"evaluation: {label}")
        b = res["baselines"]
        cols = [
            "iso",
            *(f"psnr_{m}" for m in ("input", "model", *b)),
            "noise_corr",
            "noise_std_ratio",
        ]
        parts += [
            f"<h3>{html.escape(label)}</h3>",
            f"<p><code>{html.escape(str(res['model']['ref']))}</code> — "
            f"<a href='{slug}/{page.name}'>full evaluation page</a></p>",
            table(res["per_iso"], cols, "{:.3f}"),
            img_tag(f"{slug}/noise_kept.png", f"noise kept, {label}"),
        ]
    first = next(iter(evaluations.values()))
    if first.get("arrays"):
        where, rows = _strengths_grid(first, out)
        parts.append(
            f"<h2>Strengths grid ({html.escape(where)})</h2>"
            "<p>columns: blur strength a = 0, 0.5, 1; rows: noise strength b = 0, 0.5, 1 — one "
            "network pass, nine compositions.</p><table>"
            + "<tr><th></th>"
            + "".join(f"<th>a = {a:g}</th>" for a in STRENGTHS)
            + "</tr>"
            + "".join(
                f"<tr><th>b = {b:g}</th>"
                + "".join(f"<td>{img_tag(src, src)}</td>" for src in cells)
                + "</tr>"
                for b, cells in rows
            )
            + "</table>"
        )
    parts += [
        "<h2>Why the third residual map</h2>",
        "<p>Sharpening moves brightness: edges get darker on one side and brighter on the "
        "other. Keeping the noise (b = 0) while sharpening (a = 1) should leave the noise a "
        "camera would have produced for the sharp scene. The plots above show the noise the "
        "output keeps, −k·R̂ₙ with k = σ(m)/σ(d), per brightness of the sharp scene, divided "
        "by the sensor model σ(S): 1 is the camera's level. Dotted: with the exact residuals "
        "of the rendering (the method itself); dashed: reusing R̂ₙ unscaled; solid: the "
        "network's R̂ₙ rescaled, which lies lower by about the noise residual's std ratio — a "
        "network trained with a point-wise loss predicts the conditional mean of the noise, "
        "so the part it cannot identify stays in the image and is not rescaled.</p>",
        "<h2>Lens</h2><p>PSF per channel (R, G, B), gamma 0.5, 8x zoom:</p>",
        img_tag(atlas, "PSF atlas"),
        "</body></html>",
    ]
    index = out / "index.html"
    index.write_text("\n".join(parts))
    summary = {
        "info": info,
        "evaluations": {
            label: {k: v for k, v in res.items() if k != "arrays"}
            for label, res in evaluations.items()
        },
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    return index
