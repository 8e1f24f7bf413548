"""The calibration reports: one self-contained ``index.html`` (matplotlib PNGs embedded)
so a person can see whether a fit is good. The markup is in ``templates/``
(``noise.html.j2``, ``lens.html.j2``), rendered with :func:`data_gen.core.html.render`; its style
follows the evaluation pages (``residual_train.evaluate``; ``data_gen`` does not import it)."""

from __future__ import annotations

import base64
import io

import numpy as np

from data_gen.calibrate.noise_result import IsoNoise
from data_gen.cfa import PLANES
from data_gen.core.html import render, table

PACKAGE = "data_gen.calibrate"
COLOURS = {"R": "#d62728", "Gr": "#2ca02c", "Gb": "#17becf", "B": "#1f77b4"}
FMT = "{:.4g}"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def embed(fig) -> str:
    """A matplotlib figure as a ``data:`` URI of its PNG, for an ``<img>``'s ``src`` (the
    figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---- noise --------------------------------------------------------------------------------


def fit_figure(fits, title: str) -> str:
    """Variance against signal with the fitted lines (log–log, so ``B`` shows), and the
    relative residuals of the points: a ``data:`` URI (:func:`embed`)."""
    plt = pyplot()
    fig, (ax, rx) = plt.subplots(1, 2, figsize=(11, 4))
    for name, f in zip(PLANES, fits, strict=True):
        col = COLOURS[name]
        x = np.maximum(f.x, 1e-6)
        ax.plot(x, f.y, "o", ms=3, color=col, label=f"{name}: R² = {f.r2:.4f}")
        xs = np.geomspace(max(x.min(), 1e-6), max(x.max(), 1e-5), 100)
        ax.plot(xs, f.model(xs), "-", color=col, lw=1)
        rx.plot(x, f.residuals(), "o-", ms=3, lw=0.5, color=col, label=name)
    ax.set(xscale="log", yscale="log", xlabel="signal v (0 = black, 1 = white)")
    ax.set(ylabel="noise variance σ²", title=title)
    ax.legend(fontsize=8)
    rx.axhline(0, color="k", lw=1)
    rx.set(xscale="log", xlabel="signal v", ylabel="measured / fit − 1", title="residuals")
    rx.legend(fontsize=8)
    fig.tight_layout()
    return embed(fig)


def dark_figure(stats: dict, shading: np.ndarray, resid: np.ndarray) -> str:
    """Read-noise histograms with the Gaussian and Tukey-λ fits; the dark shading: a
    ``data:`` URI (:func:`embed`)."""
    from scipy import stats as st

    plt = pyplot()
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.4))
    for p, name in enumerate(PLANES):
        ax = axes[p]
        e = resid[p]
        sh = stats["shape"][p]
        lim = np.percentile(np.abs(e), 99.99) if e.size else 1
        bins = np.linspace(-lim, lim, 81)
        ax.hist(e, bins, density=True, color=COLOURS[name], alpha=0.5)
        xs = np.linspace(-lim, lim, 400)
        ax.plot(xs, st.norm.pdf(xs, 0, sh["sigma_gauss_dn"]), "k--", lw=1, label="Gaussian")
        ax.plot(
            xs,
            st.tukeylambda.pdf(xs, sh["lambda"], scale=sh["sigma_tl_dn"]),
            "k-",
            lw=1,
            label=f"Tukey λ={sh['lambda']:.3f}",
        )
        ax.set(yscale="log", title=f"{name}: read noise ({sh['kind']})", xlabel="DN")
        ax.legend(fontsize=7)
    im = axes[4].imshow(shading[1], cmap="gray")
    axes[4].set_title("dark shading, Gr (DN)")
    fig.colorbar(im, ax=axes[4], fraction=0.046)
    fig.tight_layout()
    return embed(fig)


def _fitted_rows(results: dict[str, IsoNoise]) -> list[dict]:
    """One row per ISO and CFA plane: the fitted ``A``, ``B``, R², the raw model's ``k1``,
    ``k0`` and the black and white levels."""
    rows = []
    for key, r in results.items():
        for p, name in enumerate(PLANES):
            rows.append(
                {
                    "ISO": key,
                    "method": r.method,
                    "plane": name,
                    "A": None if r.A is None else float(r.A[p]),
                    "B": float(r.B[p]),
                    "R²": float(r.r2[p]) if r.r2 else "",
                    "k1 (DN/DN @100)": float(r.k1[p]) if r.k1 is not None else "",
                    "k0 (DN² @100)": float(r.k0[p]) if r.k0 is not None else "",
                    "black (DN)": float(r.black[p]),
                    "white (DN)": float(r.white),
                }
            )
    return rows


def _dark_section(dark: tuple) -> dict:
    """``{"frames", "table", "bad_pixels", "figure"}`` of one ISO's dark-frame statistics
    (``(stats, shading, resid)``)."""
    stats, shading, resid = dark
    rows = [
        {
            "plane": name,
            "black (DN)": stats["black"][p],
            "black error (DN)": stats["black_error_dn"][p],
            "per-frame error σ (DN)": stats["black_error_frame_std_dn"][p],
            "read var (DN²)": stats["read_var_dn2"][p],
            "read σ w/o rows (DN)": stats["read_sigma_dn"][p],
            "row σ (DN)": stats["row_sigma_dn"][p],
            "Tukey λ": stats["shape"][p]["lambda"],
            "PPCC TL / normal": f"{stats['shape'][p]['ppcc_tl']:.5f} / "
            f"{stats['shape'][p]['ppcc_gauss']:.5f}",
            "shading σ (DN)": stats["shading_std_dn"][p],
        }
        for p, name in enumerate(PLANES)
    ]
    return {
        "frames": stats["frames"],
        "table": table(rows, list(rows[0]), FMT),
        "bad_pixels": ", ".join(f"{k} {v}" for k, v in stats["bad_pixel_counts"].items()),
        "figure": dark_figure(stats, shading, resid),
    }


def _iso_section(key: str, r: IsoNoise) -> dict:
    """``{"key", "method", "frames", "black_source", "fit", "dark"}`` of one ISO: the fit's
    figure and the dark frames' section (:func:`_dark_section`), each None without them."""
    fits = r.line_fits
    return {
        "key": key,
        "method": r.method,
        "frames": ", ".join(r.frames),
        "black_source": r.black_source,
        "fit": fit_figure(fits, f"ISO {key}: σ² = A·v + B") if fits is not None else None,
        "dark": _dark_section(r.dark) if r.dark is not None else None,
    }


def noise_page(
    doc: dict, results: dict[str, IsoNoise], dark_doc: dict | None, no_sensor: str
) -> str:
    """The noise calibration's ``index.html`` (``templates/noise.html.j2``): the fitted
    noise per ISO and plane, each ISO's fit and dark frames, the command."""
    rows = _fitted_rows(results)
    return render(
        "noise.html.j2",
        PACKAGE,
        title="Noise calibration",
        camera=doc["camera"] or "?",
        cfa=doc["cfa"],
        size=doc["size"],
        units=doc["units"],
        no_sensor=no_sensor,
        fitted=table(rows, list(rows[0]), FMT),
        isos=[_iso_section(key, r) for key, r in results.items()],
        config=str(doc["config"]),
    )


# ---- lens ---------------------------------------------------------------------------------

CHANNEL_COLOURS = ("#d62728", "#2ca02c", "#1f77b4")


def _chan_colour(i: int, n: int) -> str:
    return "k" if n == 1 else CHANNEL_COLOURS[i % 3]


def geometry_figure(doc: dict, corr, geo) -> str:
    """Corner residuals (arrows, magnified) and the fitted distortion's displacement: a
    ``data:`` URI (:func:`embed`)."""
    from data_gen.calibrate.distortion import distort_points

    plt = pyplot()
    h, w = doc["frame"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for cap, (q, x) in enumerate(corr):
        r = geo.project(cap, q) - x
        scale = 0.1 * max(h, w) / max(float(np.abs(r).max()), 1e-3)
        ax.quiver(
            x[:, 1],
            x[:, 0],
            r[:, 1],
            -r[:, 0],
            angles="xy",
            scale_units="xy",
            scale=1 / scale,
            width=0.003,
        )
    ax.set(xlim=(0, w), ylim=(h, 0), title=f"corner residuals (magnified), RMS {geo.rms_px:.3f} px")
    yy, xx = np.meshgrid(np.linspace(0, h - 1, 12), np.linspace(0, w - 1, 16), indexing="ij")
    p = np.stack([yy.ravel(), xx.ravel()], 1)
    d = distort_points(p, (h, w), geo.k) - p
    bx.quiver(p[:, 1], p[:, 0], d[:, 1], -d[:, 0], angles="xy", scale_units="xy", scale=1)
    mx = float(np.sqrt((d**2).sum(1)).max())
    bx.set(
        xlim=(0, w),
        ylim=(h, 0),
        title=f"distortion k = [{geo.k[0]:.4g}, {geo.k[1]:.4g}] (max {mx:.2f} px, true scale)",
    )
    fig.tight_layout()
    return embed(fig)


def mtf_map_figure(doc: dict) -> str:
    """MTF50 per grid cell over the frame: a ``data:`` URI (:func:`embed`)."""
    plt = pyplot()
    rows, cols = doc["grid"]
    m = np.full((rows, cols), np.nan)
    for cell in doc["cells"]:
        if cell["mtf50"] is not None:
            m[cell["row"], cell["col"]] = cell["mtf50"]
    fig, ax = plt.subplots(figsize=(6, 4))
    im = ax.imshow(m, cmap="viridis")
    for cell in doc["cells"]:
        if cell["mtf50"] is not None:
            ax.text(
                cell["col"],
                cell["row"],
                f"{cell['mtf50']:.3f}",
                ha="center",
                va="center",
                color="w",
                fontsize=8,
            )
    ax.set(
        title="MTF50 (cycles/pixel), mean of channels and orientations",
        xlabel="column",
        ylabel="row",
    )
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return embed(fig)


def cell_figure(cell: dict) -> str:
    """ESF, LSF and SFR per channel and orientation, and the PSF of one cell: a ``data:``
    URI (:func:`embed`)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    styles = {"rows": "-", "cols": "--"}
    for o, sfrs in cell["sfr"].items():
        n = len(sfrs)
        for i, s in enumerate(sfrs):
            col = _chan_colour(i, n)
            axes[0].plot(s.d, s.esf, styles[o], color=col, lw=1)
            axes[1].plot(
                s.d, s.lsf / max(float(np.abs(s.lsf).max()), 1e-12), styles[o], color=col, lw=1
            )
            f = s.freq <= 0.5
            axes[2].plot(
                s.freq[f],
                s.sfr[f],
                styles[o],
                color=col,
                lw=1,
                label=f"{o} ch{i}: MTF50 {s.mtf50:.3f}",
            )
    axes[0].set(title="ESF (solid: edges along rows, dashed: columns)", xlabel="distance (px)")
    axes[1].set(title="LSF (normalised)", xlabel="distance (px)")
    axes[2].axhline(0.5, color="0.7", lw=1)
    axes[2].set(title="SFR", xlabel="cycles/pixel", ylim=(0, 1.1))
    axes[2].legend(fontsize=6)
    if cell["psf"] is not None:
        p = np.moveaxis(cell["psf"], 0, -1)
        p = p / p.max()
        axes[3].imshow(p[..., 0] if p.shape[-1] == 1 else p, cmap="gray")
        axes[3].set_title("PSF (normalised to its peak)")
    else:
        axes[3].text(0.5, 0.5, "not covered by the chart", ha="center")
    axes[3].axis("off")
    fig.tight_layout()
    return embed(fig)


def _mtf50_rows(doc: dict) -> list[dict]:
    """One row per grid cell: whether it was measured, MTF50 per channel and the number of
    edges, per orientation."""
    rows = []
    for cell in doc["cells"]:
        row = {"row": cell["row"], "col": cell["col"], "measured": str(cell["measured"])}
        for o, v in cell["orientations"].items():
            row[f"MTF50 {o}"] = ", ".join(f"{x:.3f}" for x in v["mtf50"])
            row[f"edges {o}"] = v["edges"]
        rows.append(row)
    return rows


def lens_page(doc: dict, cells: list[dict], grid: np.ndarray, geo, corr) -> str:
    """The lens calibration's ``index.html`` (``templates/lens.html.j2``): the geometry fit,
    MTF50 over the frame, and per measured position its edge, SFR and PSF figure."""
    cols = ["row", "col", "measured", "MTF50 rows", "edges rows", "MTF50 cols", "edges cols"]
    shown = []
    for cell, d in zip(cells, doc["cells"], strict=True):
        if not cell["sfr"] and cell["psf"] is None:
            continue
        pos = d["position"]
        heading = (
            f"cell ({cell['row']}, {cell['col']}) at y {pos['y_px']:.0f}, x {pos['x_px']:.0f} px"
        )
        shown.append({"heading": heading, "figure": cell_figure(cell)})
    return render(
        "lens.html.j2",
        PACKAGE,
        title="Lens calibration",
        frame=doc["frame"],
        captures=len(doc["captures"]),
        channels=", ".join(doc["channels"]),
        units=doc["units"],
        g=doc["geometry"],
        geometry=geometry_figure(doc, corr, geo),
        mtf_map=mtf_map_figure(doc),
        mtf50=table(_mtf50_rows(doc), cols, FMT),
        cells=shown,
        config=str(doc["config"]),
    )
