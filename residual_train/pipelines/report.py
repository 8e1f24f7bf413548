"""The demo's HTML report (one file + PNGs, no server): what ran, how training went, and
the evaluations of :mod:`residual_train.evaluate` for each model, side by side.

Evaluation (numbers) lives in :mod:`residual_train.evaluate.run`, its page in
:mod:`residual_train.evaluate.page`; this module only lays them out with the training
curves, a strengths grid and the lens's PSF. The markup is ``templates/report.html.j2``
(in the evaluation pages' frame).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from data_gen.core.html import render, table
from residual_train.deploy.compose import compose_blur_noise
from residual_train.evaluate.page import save_image, write_page
from residual_train.evaluate.result import EvaluationResult
from residual_train.pipelines.metrics import read_metrics

STRENGTHS = (0.0, 0.5, 1.0)
# the report's template, then the evaluation pages' layout and macros it uses
TEMPLATES = ("residual_train.pipelines", "residual_train.evaluate")


def _curves(run_dir: Path, out: Path) -> str:
    """Training loss and validation PSNR per component over the steps (``curves.png`` in
    ``out``); returns the file's name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    tr = [(r.step, r.train_loss) for r in rows if r.train_loss is not None]
    if tr:
        ax[0].plot(*zip(*tr, strict=True), lw=0.8)
    ax[0].set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    for c in ("full", "blur", "noise"):
        pts = [(r.step, r.val_psnr[c]) for r in rows if c in r.val_psnr]
        inp = [(r.step, r.val_psnr_input[c]) for r in rows if c in r.val_psnr_input]
        if pts:
            key = f"psnr_{c}"
            line = ax[1].plot(*zip(*pts, strict=True), "-", marker="o", label=key)[0]
            ax[1].plot(*zip(*inp, strict=True), ":", color=line.get_color(), label=f"{key} (input)")
    ax[1].set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR per component")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)
    plt.close(fig)
    return "curves.png"


def _psf_atlas(psf: np.ndarray, out: Path) -> str:
    """``psf`` ``(C, K, K)``: one panel per channel, gamma 0.5, 8x zoom (``psf_atlas.png``
    in ``out``); returns the file's name."""
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


def _strengths_grid(result: EvaluationResult, out: Path) -> tuple[str, list]:
    """Nine compositions of one image's maps (one network pass) as PNGs in ``out``: returns
    which image and ISO, and per row b its cells' file names (columns a)."""
    name, by_iso = next(iter(result.arrays.items()))
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


def _run_tables(info: dict) -> tuple[dict, dict]:
    """What was run (:func:`data_gen.core.html.table`): seconds per stage, and the versions,
    hardware and results."""
    stages = [{"stage": k, "seconds": float(v)} for k, v in info["timings_s"].items()]
    facts = {
        **info["versions"],
        **info["hardware"],
        "python": info["python"],
        "published model": info["published"],
        "training result": info["training"],
    }
    rows = [
        {"key": k, "value": json.dumps(v) if isinstance(v, dict) else str(v)}
        for k, v in facts.items()
    ]
    return table(stages, ["stage", "seconds"], "{:.1f}"), table(rows, ["key", "value"], "{}")


def _evaluations(evaluations: dict[str, EvaluationResult], out: Path) -> list[dict]:
    """Writes each evaluation's own page in ``out/<slug>/``; returns per evaluation
    ``{"label", "ref", "page", "table", "kept"}`` (links relative to ``out``)."""
    shown = []
    for label, res in evaluations.items():
        slug = _slug(label)
        page = write_page(res, out / slug, title=f"evaluation: {label}")
        b = res.baselines
        cols = [
            "iso",
            *(f"psnr_{m}" for m in ("input", "model", *b)),
            "noise_corr",
            "noise_std_ratio",
        ]
        shown.append(
            {
                "label": label,
                "ref": res.model.ref,
                "page": f"{slug}/{page.name}",
                "table": table(res.per_iso, cols, "{:.3f}"),
                "kept": f"{slug}/noise_kept.png",
            }
        )
    return shown


def _grid(evaluations: dict[str, EvaluationResult], out: Path) -> dict | None:
    """The strengths grid of the first evaluation's kept arrays (None without them):
    ``{"where", "cols", "rows": [{"label", "cells"}]}``."""
    first = next(iter(evaluations.values()))
    if not first.arrays:
        return None
    where, rows = _strengths_grid(first, out)
    return {
        "where": where,
        "cols": [f"a = {a:g}" for a in STRENGTHS],
        "rows": [{"label": f"b = {b:g}", "cells": cells} for b, cells in rows],
    }


def write_report(
    out: Path,
    info: dict,
    data_cfg: dict,
    train_cfg: dict,
    run_dir: Path,
    evaluations: dict[str, Mapping],
    psf: np.ndarray,
) -> Path:
    """``out/index.html`` (``templates/report.html.j2``) with its PNGs and ``report.json``;
    each evaluation (:func:`residual_train.evaluate.evaluate`'s result) also gets its own
    page in ``out/<label>/``. Returns the index's path."""
    import yaml

    results = {label: EvaluationResult.of(res) for label, res in evaluations.items()}
    out.mkdir(parents=True, exist_ok=True)
    stages, run = _run_tables(info)
    page = render(
        "report.html.j2",
        *TEMPLATES,
        title="residual-train demo",
        stages=stages,
        run=run,
        data_cfg=yaml.safe_dump(data_cfg, sort_keys=False),
        train_cfg=yaml.safe_dump(train_cfg, sort_keys=False),
        curves=_curves(run_dir, out),
        evaluations=_evaluations(results, out),
        grid=_grid(results, out),
        atlas=_psf_atlas(psf, out),
    )
    index = out / "index.html"
    index.write_text(page)
    summary = {
        "info": info,
        "evaluations": {
            label: {k: v for k, v in res.items() if k != "arrays"}
            for label, res in evaluations.items()
        },
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    return index
