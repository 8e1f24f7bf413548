"""The calibration reports: one self-contained ``index.html`` (matplotlib PNGs embedded)
so a person can see whether a fit is good. The style follows the evaluation pages
(``residual_train.evaluate.page``; ``data_gen`` does not import it)."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from data_gen.cfa import PLANES

CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;"
    "padding:3px 8px;text-align:right}img{max-width:100%}"
    "pre{background:#f4f4f4;padding:.5em;overflow:auto;font-size:75%}"
    ".miss{color:#b00;font-weight:bold}.hit{color:#070}.note{color:#555}"
)
COLOURS = {"R": "#d62728", "Gr": "#2ca02c", "Gb": "#17becf", "B": "#1f77b4"}


def table(rows: list[dict], cols: list[str], fmt: str = "{:.4g}") -> str:
    """An HTML table of ``rows`` (dicts) with columns ``cols``; floats use ``fmt``."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)

    def cell(v) -> str:
        return fmt.format(v) if isinstance(v, float) else html.escape(str(v))

    body = "".join(
        "<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def embed(fig) -> str:
    """A matplotlib figure as an ``<img>`` with the PNG inline (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    pyplot().close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="plot">'


def document(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


# ---- noise --------------------------------------------------------------------------------


def fit_figure(fits, title: str) -> str:
    """Variance against signal with the fitted lines (log–log, so ``B`` shows), and the
    relative residuals of the points."""
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
    """Read-noise histograms with the Gaussian and Tukey-λ fits; the dark shading."""
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


def noise_page(doc: dict, results: dict, dark_doc: dict | None, no_sensor: str) -> str:
    parts = [
        f"<p>Camera <b>{html.escape(doc['camera'] or '?')}</b>, CFA {doc['cfa']}, "
        f"{doc['size'][0]}×{doc['size'][1]} photosites. {html.escape(doc['units'])}.</p>"
    ]
    if no_sensor:
        parts.append(f"<p class='miss'>No sensor.yaml: {html.escape(no_sensor)}.</p>")
    rows = []
    for key, r in results.items():
        for p, name in enumerate(PLANES):
            rows.append(
                {
                    "ISO": key,
                    "method": r["method"],
                    "plane": name,
                    "A": None if r.get("A") is None else float(r["A"][p]),
                    "B": float(r["B"][p]),
                    "R²": float(r["r2"][p]) if r.get("r2") else "",
                    "k1 (DN/DN @100)": float(r["k1"][p]) if "k1" in r else "",
                    "k0 (DN² @100)": float(r["k0"][p]) if "k0" in r else "",
                    "black (DN)": float(r["black"][p]),
                    "white (DN)": float(r["white"]),
                }
            )
    parts.append("<h2>Fitted noise</h2>")
    parts.append(table(rows, list(rows[0])))
    for key, r in results.items():
        parts.append(f"<h2>ISO {html.escape(key)}: {r['method']}</h2>")
        parts.append(
            f"<p class='note'>frames: {html.escape(', '.join(r['frames']))}; black from "
            f"{r.get('black_source', 'file')}</p>"
        )
        if "_fits" in r:
            parts.append(fit_figure(r["_fits"], f"ISO {key}: σ² = A·v + B"))
        if "_dark" in r:
            stats, shading, resid = r["_dark"]
            drows = [
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
            parts.append(f"<h3>Dark frames ({stats['frames']})</h3>")
            parts.append(table(drows, list(drows[0])))
            parts.append(
                "<p>bad pixels: "
                + ", ".join(f"{k} {v}" for k, v in stats["bad_pixel_counts"].items())
                + "</p>"
            )
            parts.append(dark_figure(stats, shading, resid))
    parts.append("<h2>Command</h2><pre>" + html.escape(str(doc["config"])) + "</pre>")
    return document("Noise calibration", "".join(parts))


# ---- lens ---------------------------------------------------------------------------------

CHANNEL_COLOURS = ("#d62728", "#2ca02c", "#1f77b4")


def _chan_colour(i: int, n: int) -> str:
    return "k" if n == 1 else CHANNEL_COLOURS[i % 3]


def geometry_figure(doc: dict, corr, geo) -> str:
    """Corner residuals (arrows, magnified) and the fitted distortion's displacement."""
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
    """ESF, LSF and SFR per channel and orientation, and the PSF of one cell."""
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


def lens_page(doc: dict, cells: list[dict], grid: np.ndarray, geo, corr) -> str:
    g = doc["geometry"]
    parts = [
        f"<p>Frame {doc['frame'][0]}×{doc['frame'][1]} px, {len(doc['captures'])} capture(s), "
        f"channels {', '.join(doc['channels'])}. {html.escape(doc['units'])}.</p>",
        f"<h2>Geometry</h2><p>{g['corners']} corners, residual {g['rms_px']:.3f} px RMS "
        f"(max {g['max_px']:.3f}); radial distortion k = [{g['k'][0]:.6g}, {g['k'][1]:.6g}] "
        f"({html.escape(g['model'])}).</p>",
        geometry_figure(doc, corr, geo),
        "<h2>MTF50 over the frame</h2>",
        mtf_map_figure(doc),
    ]
    rows = []
    for cell in doc["cells"]:
        row = {"row": cell["row"], "col": cell["col"], "measured": str(cell["measured"])}
        for o, v in cell["orientations"].items():
            row[f"MTF50 {o}"] = ", ".join(f"{x:.3f}" for x in v["mtf50"])
            row[f"edges {o}"] = v["edges"]
        rows.append(row)
    cols = ["row", "col", "measured", "MTF50 rows", "edges rows", "MTF50 cols", "edges cols"]
    parts.append(table(rows, cols))
    parts.append("<h2>Per position: edge spread → line spread → SFR, and the PSF</h2>")
    for cell, d in zip(cells, doc["cells"], strict=True):
        if not cell["sfr"] and cell["psf"] is None:
            continue
        pos = d["position"]
        parts.append(
            f"<h3>cell ({cell['row']}, {cell['col']}) at y {pos['y_px']:.0f}, x {pos['x_px']:.0f} px</h3>"
        )
        parts.append(cell_figure(cell))
    parts.append("<h2>Command</h2><pre>" + html.escape(str(doc["config"])) + "</pre>")
    return document("Lens calibration", "".join(parts))
