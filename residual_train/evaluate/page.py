"""HTML for evaluation results: tables, plots (matplotlib, PNG) and image panels.

Small helpers shared with the demo's report: :func:`table`, :func:`save_image`,
:func:`img_tag`, :data:`CSS`.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image

from data_gen.preview import to_rgb8
from data_gen.sources import linear_to_srgb

CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;"
    "padding:3px 8px;text-align:right}figure{display:inline-block;margin:4px}"
    "figure img{width:180px}figcaption{font-size:80%;text-align:center}"
    "pre{background:#f4f4f4;padding:.5em;overflow:auto;font-size:75%}"
    ".miss{color:#b00;font-weight:bold}.hit{color:#070}"
)
METHODS = ("input", "model", "wiener_wavelet", "bm3d_wiener")


def table(rows: list[dict], cols: list[str], fmt: str = "{:.2f}", classes=None) -> str:
    """An HTML table of ``rows`` (dicts) with columns ``cols``; floats use ``fmt``.

    ``classes``: optional ``(row, col) -> css class`` to mark cells.
    """
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)

    def cell(r: dict, c: str) -> str:
        v = r.get(c, "")
        text = fmt.format(v) if isinstance(v, float) else html.escape(str(v))
        cls = classes(r, c) if classes else None
        return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"

    body = "".join("<tr>" + "".join(cell(r, c) for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def save_image(img: np.ndarray, path: Path, scale: int = 1, residual: bool = False) -> str:
    """``(C, H, W)`` linear -> sRGB PNG (residuals: 0.5 grey = 0, symmetric scale)."""
    if residual:
        vis = 0.5 + img / (2 * max(float(np.abs(img).max()), 1e-6))
    else:
        vis = linear_to_srgb(img)
    im = Image.fromarray(to_rgb8(vis))
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    im.save(path)
    return path.name


def img_tag(src: str, alt: str) -> str:
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">'


def _plots(per_iso: list[dict], baselines: list[str], out: Path) -> tuple[str, str]:
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
    for r in per_iso:
        rows = [b for b in r["noise_kept"] if b["enough"]]
        c = [np.sqrt(b["lo"] * b["hi"]) if b["lo"] > 0 else b["hi"] / 2 for b in rows]
        line = ax.plot(c, [b["ratio"] for b in rows], "o-", label=f"ISO {r['iso']:g}")[0]
        for key, style in (("noise_kept_true_residuals", ":"), ("noise_kept_unscaled", "--")):
            rows_t = [b for b in r[key] if b["enough"]]
            ct = [np.sqrt(b["lo"] * b["hi"]) if b["lo"] > 0 else b["hi"] / 2 for b in rows_t]
            ax.plot(ct, [b["ratio"] for b in rows_t], style, color=line.get_color(), alpha=0.6)
    ax.axhspan(0.8, 1.2, color="0.9", zorder=0)
    ax.axhline(1, color="k", lw=1)
    if ax.lines[1:]:  # a log axis needs data
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


def panels(arrays: dict, baselines: list[str], out: Path, crop: int = 128) -> str:
    """Crops of the kept images at their highest ISO: input, corrections, truth, maps."""
    parts = []
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
            figs.append(
                f"<figure>{img_tag(src, cap)}<figcaption>{html.escape(cap)}</figcaption></figure>"
            )
        for k in ("R_blur", "R_noise"):
            src = save_image(
                a[k][:, y0 : y0 + s, x0 : x0 + s], out / f"{stem}_{k}.png", 2, residual=True
            )
            figs.append(
                f"<figure>{img_tag(src, k)}<figcaption>{k} (estimated)</figcaption></figure>"
            )
        parts.append(f"<h3>{html.escape(name)}, ISO {iso:g}</h3>" + "".join(figs))
    return "\n".join(parts)


def write_page(result: dict, out: Path, title: str = "residual-train evaluation") -> Path:
    """``out/index.html`` with its PNGs."""
    out.mkdir(parents=True, exist_ok=True)
    b = result["baselines"]
    per_iso = result["per_iso"]
    psnr_png, kept_png = _plots(per_iso, b, out)
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
    kept_rows = [
        {"iso": r["iso"], **{k: v for k, v in row.items()}}
        for r in per_iso
        for row in r["noise_kept"]
    ]

    def mark(r: dict, c: str) -> str | None:
        if c.startswith("gain_over_bm3d"):
            return "hit" if r[c] >= 1.0 else "miss"
        if c.startswith("share_beating_bm3d"):
            return "hit" if r[c] >= 0.8 else "miss"
        return None

    set_cols = ["iso", "images", "psnr_model", *(f"psnr_{x}" for x in b)]
    for x in b:
        set_cols += [f"gain_over_{x}", f"share_beating_{x}", f"worst_margin_over_{x}"]
    set_parts = [
        f"<h3>{html.escape(name)} ({html.escape(s['role'])}, {s['images']} images)</h3>"
        + table(s["per_iso"], set_cols, classes=mark)
        + "<p>worst image per ISO: "
        + "; ".join(
            f"ISO {r['iso']:g}: "
            + ", ".join(
                f"{html.escape(str(r[f'worst_image_{x}']))} vs {html.escape(x)}"
                for x in b
                if x.startswith("bm3d")
            )
            for r in s["per_iso"]
        )
        + "</p>"
        for name, s in (result.get("per_set") or {}).items()
    ]

    m = result["model"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>Model <code>{html.escape(str(m['ref']))}</code> ({html.escape(str(m['path']))}); "
        f"{len(result['images'])} real photographs rendered through the card's lens and sensor "
        "(every pixel blurred with the PSF of its position in the frame, one noise realisation "
        "per image and ISO). PSNR / SSIM against the clean image, linear, data range 1 = white; "
        "<i>model</i> = brightness-consistent composition at a = b = 1. The baselines without a "
        "suffix pick their Wiener regularisation per image with the clean image as oracle (the "
        "bar); the <i>_practical</i> ones choose it from the noise model and the PSF (what a "
        "user gets).</p>",
        "<h2>PSNR (dB)</h2>",
        table(per_iso, psnr_cols, classes=mark),
        img_tag(psnr_png, "PSNR vs ISO"),
        "<h2>Per set: margin per image</h2>"
        "<p>gain_over_b: mean over the set's images of PSNR(model) − PSNR(b); share_beating_b: "
        "the share of images where the model is ahead; worst_margin_over_b: the worst "
        "image's margin. Sets of role <i>test</i> are for reporting only, never for choosing."
        "</p>",
        *set_parts,
        "<h2>SSIM</h2>",
        table(per_iso, ssim_cols, "{:.4f}"),
        "<h2>Each head alone, and the noise residual's fidelity</h2>",
        "<p>blur head: x + R̂_b against the noisy sharp image; noise head: x + R̂_n against "
        "the blurred clean image. noise_corr: correlation of R̂_n with the true noise residual; "
        "noise_std_ratio: their std ratio. noise_kept_worst: largest |kept / σ(S) − 1| over "
        "brightness bins at a = 1, b = 0 (the noise put back, −k·R̂_n); _total: of the whole "
        "deviation y(1, 0) − S.</p>",
        table(per_iso, head_cols, "{:.3f}"),
        "<h2>Noise kept at a = 1, b = 0, per brightness of the sharp scene</h2>",
        img_tag(kept_png, "noise kept vs brightness"),
        "<details><summary>table</summary>"
        + table(
            kept_rows,
            ["iso", "lo", "hi", "pixels", "sigma_model", "sigma_kept", "ratio", "enough"],
            "{:.4g}",
        )
        + "</details>",
        "<h2>Images</h2>",
        panels(result.get("arrays", {}), b, out),
        "<h2>Per image</h2><details><summary>table</summary>"
        + table(
            result["per_image"],
            [
                "image",
                "iso",
                *(f"psnr_{x}" for x in ("input", "model", *b)),
                *(f"margin_over_{x}" for x in b),
                "noise_corr",
            ],
            "{:.3f}",
        )
        + "</details>",
        "</body></html>",
    ]
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index


def write_components_page(
    result: dict, out: Path, title: str = "residual-train: components on photographs with depth"
) -> Path:
    """``out/index.html`` of :func:`residual_train.evaluate.components.evaluate_components`:
    per ISO and component the mean PSNR of the input, the model and each baseline against
    the rendering without that component (and how many photographs the model beats each
    on), the noise kept per brightness bin, and every photograph's row."""
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
    sources = "".join(
        f"<li>{html.escape(n)}: {html.escape(s)}</li>" for n, s in result["depth_sources"].items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>
<p>Model {html.escape(str(result["model"]["path"]))}, components
{html.escape(", ".join(result["model"]["components"]))}. PSNR (dB, pixels with measured depth)
of the input, the model with only that component corrected and each classical baseline,
against the photograph rendered without that component; <em>all</em>: every component
corrected, against the clean photograph.</p>
<h2>Per ISO</h2>{table(rows, cols, classes=mark)}
<h2>Noise kept with every other component corrected (ratio to the sensor model, dark → bright)</h2>
{table(kept, ["iso", "maps", "ratio per bin", "worst"])}
<h2>Per photograph</h2>{table(per_image, icols)}
<h2>Depth</h2><ul>{sources}</ul>
<h2>Baselines</h2><pre>{html.escape(str(result["baselines"]))}</pre>
</body></html>"""
    p = out / "index.html"
    p.write_text(page)
    return p
