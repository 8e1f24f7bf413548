"""HTML for evaluation results: tables, plots (matplotlib, PNG) and image panels.

The markup is in ``templates/`` (``evaluation.html.j2``, ``components.html.j2``, and the
``_layout`` and ``_macros`` the demo's reports share); this module computes what they show
and renders them with :func:`data_gen.core.html.render`. :func:`save_image` is shared with the
demo's reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from data_gen.core.html import render, table
from data_gen.preview import to_rgb8
from data_gen.sources import linear_to_srgb
from residual_train.evaluate.result import EvaluationResult

PACKAGE = "residual_train.evaluate"
METHODS = ("input", "model", "wiener_wavelet", "bm3d_wiener")


def save_image(img: np.ndarray, path: Path, scale: int = 1, residual: bool = False) -> str:
    """``(C, H, W)`` linear -> sRGB PNG (residuals: 0.5 grey = 0, symmetric scale); returns
    the file's name."""
    if residual:
        vis = 0.5 + img / (2 * max(float(np.abs(img).max()), 1e-6))
    else:
        vis = linear_to_srgb(img)
    im = Image.fromarray(to_rgb8(vis))
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    im.save(path)
    return path.name


# the noise kept with the exact residuals (dotted) and with R̂ₙ not rescaled (dashed)
EXTRA = (("noise_kept_true_residuals", ":"), ("noise_kept_unscaled", "--"))


def _plots(per_iso: list[dict], baselines: list[str], out: Path) -> tuple[str, str]:
    """PSNR against ISO and the noise kept per brightness, as PNGs in ``out``; returns their
    names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    isos = [r["iso"] for r in per_iso]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m in ("input", "model", *baselines):
        ax.plot(isos, [r[f"psnr_{m}"] for r in per_iso], "o-", label=m)
    ax.set(xscale="log", xlabel="ISO", ylabel="PSNR (dB), mean over images", title="quality")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "psnr_vs_iso.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    judged = False  # a log axis needs data: some bin with enough pixels
    for r in per_iso:
        rows = [b for b in r["noise_kept"] if b["enough"]]
        judged = judged or bool(rows) or any(b["enough"] for k, _ in EXTRA for b in r[k])
        c = [np.sqrt(b["lo"] * b["hi"]) if b["lo"] > 0 else b["hi"] / 2 for b in rows]
        line = ax.plot(c, [b["ratio"] for b in rows], "o-", label=f"ISO {r['iso']:g}")[0]
        for key, style in EXTRA:
            rows_t = [b for b in r[key] if b["enough"]]
            ct = [np.sqrt(b["lo"] * b["hi"]) if b["lo"] > 0 else b["hi"] / 2 for b in rows_t]
            ax.plot(ct, [b["ratio"] for b in rows_t], style, color=line.get_color(), alpha=0.6)
    ax.axhspan(0.8, 1.2, color="0.9", zorder=0)
    ax.axhline(1, color="k", lw=1)
    if judged:
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5, 0.5, "no brightness bin with enough pixels", ha="center", transform=ax.transAxes
        )
    ax.set(
        xlabel="brightness of the sharp scene (linear)",
        ylabel="noise kept / sensor model σ(S)",
        title="a = 1, b = 0: noise put back\n(solid: k·R̂ₙ, dashed: R̂ₙ unscaled, dotted: exact residuals)",
    )
    fig.tight_layout()
    fig.savefig(out / "noise_kept.png", dpi=90)
    plt.close(fig)
    return "psnr_vs_iso.png", "noise_kept.png"


def panels(arrays: dict, baselines: list[str], out: Path, crop: int = 128) -> list[dict]:
    """Crops of the kept images at their highest ISO (input, corrections, truth, maps) as
    PNGs in ``out``; returns one ``{"heading", "figures": [{"src", "alt", "caption"}]}``
    per image."""
    shown = []
    for name, by_iso in arrays.items():
        iso = max(by_iso)
        a = by_iso[iso]
        h, w = a["clean"].shape[1:]
        s = min(crop, h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        stem = name.replace("/", "_")
        cells = [
            ("input", a["noise_blur"]),
            ("model a = b = 1", a["model"]),
            ("model a = 1, b = 0", a["a1_b0"]),
            *((b, a[b]) for b in baselines),
            ("clean", a["clean"]),
        ]
        figs = []
        for cap, im in cells:
            src = save_image(
                im[:, y0 : y0 + s, x0 : x0 + s], out / f"{stem}_{cap.split()[0]}_{len(figs)}.png", 2
            )
            figs.append({"src": src, "alt": cap, "caption": cap})
        for k in ("R_blur", "R_noise"):
            src = save_image(
                a[k][:, y0 : y0 + s, x0 : x0 + s], out / f"{stem}_{k}.png", 2, residual=True
            )
            figs.append({"src": src, "alt": k, "caption": f"{k} (estimated)"})
        shown.append({"heading": f"{name}, ISO {iso:g}", "figures": figs})
    return shown


def _mark(r: dict, c: str) -> str | None:
    """The css class of a cell that shows a target met (``hit``) or missed (``miss``)."""
    if c.startswith("gain_over_bm3d"):
        return "hit" if r[c] >= 1.0 else "miss"
    if c.startswith("share_beating_bm3d"):
        return "hit" if r[c] >= 0.8 else "miss"
    return None


def _tables(result: EvaluationResult) -> dict[str, dict]:
    """The evaluation page's tables (:func:`data_gen.core.html.table`): ``psnr``, ``bands``
    (where the error lies, :func:`~residual_train.evaluate.metrics.error_bands`), ``ssim``,
    ``heads``, ``kept`` (noise kept per brightness bin) and ``per_image``."""
    b = result.baselines
    per_iso = result.per_iso
    psnr_cols = ["iso", "images", *(f"psnr_{m}" for m in ("input", "model", *b))]
    psnr_cols += [f"gain_over_{x}" for x in b]
    ssim_cols = ["iso", *(f"ssim_{m}" for m in ("input", "model", *b))]
    head_cols = [
        "iso",
        "psnr_blur_head_input",
        "psnr_blur_head",
        "psnr_noise_head_input",
        "psnr_noise_head",
        "noise_corr",
        "noise_std_ratio",
        "noise_kept_worst",
        "noise_kept_total_worst",
    ]
    kept_rows = [{"iso": r["iso"], **row} for r in per_iso for row in r["noise_kept"]]
    kept_cols = ["iso", "lo", "hi", "pixels", "sigma_model", "sigma_kept", "ratio", "enough"]
    image_cols = [
        "image",
        "iso",
        *(f"psnr_{x}" for x in ("input", "model", *b)),
        *(f"margin_over_{x}" for x in b),
        "noise_corr",
    ]
    bands = [
        {"iso": r["iso"], "output": m, **r[f"bands_{m}"]}
        for r in per_iso
        for m in ("model", *b)
        if f"bands_{m}" in r  # absent in a result from before they were measured
    ]
    band_cols = list(bands[0]) if bands else ["iso", "output"]
    return {
        "psnr": table(per_iso, psnr_cols, "{:.2f}", _mark),
        "bands": table(bands, band_cols, "{:.2f}"),
        "ssim": table(per_iso, ssim_cols, "{:.4f}"),
        "heads": table(per_iso, head_cols, "{:.3f}"),
        "kept": table(kept_rows, kept_cols, "{:.4g}"),
        "per_image": table(result.per_image, image_cols, "{:.3f}"),
    }


def _sets(result: EvaluationResult) -> list[dict]:
    """Per set of photographs ``{"heading", "table", "worst"}``: its margins per ISO and the
    worst image against each BM3D baseline (text)."""
    b = result.baselines
    cols = ["iso", "images", "psnr_model", *(f"psnr_{x}" for x in b)]
    for x in b:
        cols += [f"gain_over_{x}", f"share_beating_{x}", f"worst_margin_over_{x}"]
    sets = []
    for name, s in result.per_set.items():
        worst = "; ".join(
            f"ISO {r['iso']:g}: "
            + ", ".join(f"{r[f'worst_image_{x}']} vs {x}" for x in b if x.startswith("bm3d"))
            for r in s.per_iso
        )
        sets.append(
            {
                "heading": f"{name} ({s.role}, {s.images} images)",
                "table": table(s.per_iso, cols, "{:.2f}", _mark),
                "worst": worst,
            }
        )
    return sets


def write_page(
    result: EvaluationResult | Mapping, out: Path, title: str = "residual-train evaluation"
) -> Path:
    """``out/index.html`` (``templates/evaluation.html.j2``) of an evaluation's result
    (:func:`residual_train.evaluate.run.evaluate`) with its PNGs; returns the page's path."""
    result = EvaluationResult.of(result)
    out.mkdir(parents=True, exist_ok=True)
    psnr_png, kept_png = _plots(result.per_iso, result.baselines, out)
    page = render(
        "evaluation.html.j2",
        PACKAGE,
        title=title,
        model=result.model,
        images=len(result.images),
        tables=_tables(result),
        sets=_sets(result),
        psnr_png=psnr_png,
        kept_png=kept_png,
        panels=panels(result.arrays, result.baselines, out),
    )
    index = out / "index.html"
    index.write_text(page)
    return index


def _components_tables(result: dict) -> dict[str, dict]:
    """The components page's tables: ``per_iso`` (per ISO and component), ``kept`` (noise
    kept per brightness bin) and ``per_image``."""
    rows = [r for r in result["per_iso"] if "bins" not in r]
    base = sorted(
        {k for r in rows for k in r if k.startswith("psnr_")} - {"psnr_input", "psnr_model"}
    )
    cols = ["iso", "component", "images", "psnr_input", "psnr_model", *base, "beats_input",
            "worst_margin_over_input"]  # fmt: skip

    def mark(r: dict, c: str) -> str | None:
        if c == "psnr_model":
            return "hit" if r["worst_margin_over_input"] > 0 else "miss"
        return None

    kept = []
    for r in result["per_iso"]:
        if "bins" in r:
            ratios = " ".join(f"{b['ratio']:.2f}" for b in r["bins"] if b["enough"])
            kept.append({"iso": r["iso"], "maps": r["component"], "ratio per bin": ratios,
                         "worst": r["worst"] if r["worst"] is not None else float("nan")})  # fmt: skip
    per_image = result["per_image"]
    icols = ["image", "iso", "component", "psnr_input", "psnr_model",
             *sorted({k for r in per_image for k in r if k.startswith("psnr_")} - {"psnr_input", "psnr_model"})]  # fmt: skip
    return {
        "per_iso": table(rows, cols, "{:.2f}", mark),
        "kept": table(kept, ["iso", "maps", "ratio per bin", "worst"], "{:.2f}"),
        "per_image": table(per_image, icols, "{:.2f}"),
    }


def write_components_page(
    result: dict, out: Path, title: str = "residual-train: components on photographs with depth"
) -> Path:
    """``out/index.html`` (``templates/components.html.j2``) of
    :func:`residual_train.evaluate.components.evaluate_components`: per ISO and component
    the mean PSNR of the input, the model and each baseline against the rendering without
    that component (and how many photographs the model beats each on), the noise kept per
    brightness bin, and every photograph's row; returns the page's path."""
    page = render(
        "components.html.j2",
        PACKAGE,
        title=title,
        model_path=str(result["model"]["path"]),
        components=", ".join(result["model"]["components"]),
        **_components_tables(result),
        depth_sources=list(result["depth_sources"].items()),
        baselines=str(result["baselines"]),
    )
    p = out / "index.html"
    p.write_text(page)
    return p
