"""Evaluation of a model whose card lists components beyond blur + noise, on real
photographs with measured depth (docs/design.md §8).

Each photograph (:mod:`.depth_sets`) goes through the card's chain at each ISO: every
component's parameters drawn per image from the card's ranges with a fixed seed, the lens
bank per position in the frame, the sensor's noise. The model runs once; then, per
component ``c``:

* ``psnr_input`` / ``psnr_model``: the input, and the model with only ``c`` corrected
  (strength 1 for ``c``, 0 for the others: the other components stay, transported as the
  composition transports them), against the rendering without ``c`` (``without_c``);
* each classical baseline of ``c`` (:data:`.classical.BASELINES_BY_COMPONENT`, given what it
  is owed, labelled oracle where it is given the truth) applied to the same input, against
  the same target;

and the fully corrected image against the clean photograph. Pixels without measured depth
are rendered with the nearest measured depth and left out of every metric. The
brightness-consistent check: the noise kept with every component but noise corrected,
per brightness bin of the clean scene, against the sensor model of that scene
(:class:`.metrics.NoiseKept`), with the model's maps and with the exact ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from data_gen.chain import chain_names, render_chain, stored_names, stored_residuals
from data_gen.components import Chain, DrawContext
from data_gen.core.errors import require
from data_gen.physics.defocus import defocus_layers
from data_gen.physics.fog import transmission
from data_gen.render import psf_index_map
from residual_train.deploy.compose import compose, slopes
from residual_train.evaluate.classical import BASELINES_BY_COMPONENT, Truth
from residual_train.evaluate.metrics import NoiseKept, ssim
from residual_train.evaluate.oracle import psnr
from residual_train.release.card import ModelCard, as_card


def card_chain(card: ModelCard | Mapping) -> Chain:
    """The chain of a model card: its components with the settings it was trained on."""
    card = as_card(card)
    names = list(card.components)
    settings = card.component_settings
    if settings is None:
        from data_gen.components import default_settings

        settings = default_settings(names)
    return Chain.build(names, settings)


def render_photograph(chain: Chain, bank, image, depth, noise, rng) -> dict:
    """The chain on a whole photograph ``(C, H, W)`` with its depth ``(H, W)``: every pixel
    blurred with the bank PSF of its position (one lens state per frame), one noise
    realisation. Returns the stored arrays (clipped at white), the drawn parameters, the
    margin and the PSF index map of the output ``(H − 2m, W − 2m)``."""
    c, h, w = image.shape
    m = chain.margin(bank.size)
    require(min(h, w) > 2 * m + 16, f"photograph {w}x{h} px is too small for the chain's margin")
    states = bank.grid.shape[0] if hasattr(bank, "grid") else bank.psfs.shape[0]
    state = 0 if states == 1 else int(rng.integers(states))
    index = psf_index_map(bank, (h, w), (h, w), 0, state)
    ctx = DrawContext(
        (h, w), (0, 0, h, w), depth, bank.psfs[int(index[h // 2, w // 2])], c, (bank.psfs, index)
    )
    params, record = chain.draw(rng, ctx)
    normal = rng.standard_normal((c, h - 2 * m, w - 2 * m), dtype=np.float32)
    t = render_chain(image, chain, params, depth, noise, normal, m)
    arrays = {k: np.minimum(t[chain_names(k)], np.float32(1)) for k in stored_names(chain.names)}
    trimmed = index[m : h - m, m : w - m]
    return {"arrays": arrays, "params": params, "record": record, "margin": m, "index": trimmed}


def _fog(r: dict, depth: np.ndarray) -> dict:
    f = r["params"]["fog"]
    return {"t": transmission(depth, f["beta"]), "airlight": f["airlight"]}


def _defocus(r: dict, depth: np.ndarray) -> dict:
    d, m = r["params"]["defocus"], r["margin"]
    radius = d["radius"][m:-m, m:-m] if m else d["radius"]
    return {"layers": defocus_layers(depth, radius, d["layers"])}


def _motion(r: dict, depth: np.ndarray) -> dict:
    return {"kernel": r["params"]["motion"]["kernel"]}


def _blur(r: dict, depth: np.ndarray) -> dict:
    return {"psfs": r["bank_psfs"], "index": r["index"]}


# what each component's classical baselines are owed beyond the judge, the mask and the
# noise model, from a rendering (:func:`render_photograph`) and the trimmed depth
OWED = {"fog": _fog, "defocus": _defocus, "motion": _motion, "blur": _blur}


def truth_for(c: str, rendered: dict, depth: np.ndarray, noise, mask: np.ndarray) -> Truth:
    """What component ``c``'s classical baselines are owed, on the trimmed frame (``depth``
    trimmed too): the rendering without ``c`` as the oracle's judge, the valid pixels,
    the noise model and the component's true parameters."""
    extra = OWED[c](rendered, depth) if c in OWED else {}
    return Truth(clean=rendered["arrays"][f"without_{c}"], mask=mask, noise=noise, **extra)


def evaluate_photograph(
    model, chain, bank, item, isos, seed: int, index: int, baselines, cache, tile, overlap
) -> dict:
    """Every metric of one photograph with depth at every ISO."""
    rows, kept_rows = [], []
    names = list(chain.names)
    for iso in isos:
        noise = model.noise_model(iso)
        rng = np.random.default_rng([seed, index, round(iso * 1000)])
        r = render_photograph(chain, bank, item.image, item.depth, noise, rng)
        r["bank_psfs"] = bank.psfs
        m, a = r["margin"], r["arrays"]
        mask, depth = (v[m:-m, m:-m] if m else v for v in (item.valid, item.depth))
        require(
            bool(mask.any()),
            f"photograph {item.name}: no pixel with measured depth inside the chain's margin "
            f"({m} px); every metric would be empty",
        )
        x = a["input"]
        maps = model.predict(x, tile=tile, overlap=overlap, iso=iso)
        require(set(maps) == set(names), f"model heads {sorted(maps)}, the card's chain {names}")
        sl = slopes(x, maps)
        true = stored_residuals(a, names)
        for c in names:
            target = a[f"without_{c}"]
            only = compose(x, maps, {n: float(n == c) for n in names}, noise, slope_maps=sl)
            row = {
                "image": item.name,
                "iso": float(iso),
                "component": c,
                "psnr_input": psnr(x, target, mask),
                "psnr_model": psnr(only, target, mask),
                "ssim_input": ssim(x, target, mask),
                "ssim_model": ssim(only, target, mask),
            }
            truth = truth_for(c, r, depth, noise, mask)
            for b in baselines.get(c, ()):
                fn = BASELINES_BY_COMPONENT[c][b]
                est = cache.get(
                    f"{c}-{b}",
                    [x, target, mask.astype(np.uint8)],
                    lambda fn=fn, t=truth, x=x: fn(x, t),
                )
                row[f"psnr_{b}"] = psnr(est, target, mask)
                row[f"ssim_{b}"] = ssim(est, target, mask)
            rows.append(row)
        full = compose(x, maps, dict.fromkeys(names, 1.0), noise, slope_maps=sl)
        rows.append(
            {
                "image": item.name,
                "iso": float(iso),
                "component": "all",
                "psnr_input": psnr(x, a["clean"], mask),
                "psnr_model": psnr(full, a["clean"], mask),
                "ssim_input": ssim(x, a["clean"], mask),
                "ssim_model": ssim(full, a["clean"], mask),
            }
        )
        if "noise" in names:  # every other component corrected, the noise kept
            keep = {n: float(n != "noise") for n in names}
            for which, mp in (("model", maps), ("exact", true)):
                y = compose(x, mp, keep, noise)
                sel = (slice(None), mask, None)  # (C, N, 1): the noise model's channel axis
                k = NoiseKept().add((y - a["clean"])[sel], a["clean"][sel], noise)
                kept_rows.append(
                    {"image": item.name, "iso": float(iso), "maps": which, "accum": k.s.tolist()}
                )
    return {"rows": rows, "kept": kept_rows}


# the classical baselines run by default, per component (every one is in the registry)
DEFAULT_BASELINES = {
    "relight": ["smooth_oracle"],
    "fog": ["dark_channel", "oracle_t"],
    "defocus": ["wiener_oracle", "rl_oracle"],
    "blur": ["bm3d_wiener", "wiener_oracle"],
    "motion": ["wiener_oracle", "rl_oracle"],
    "noise": ["bm3d"],
}


def summarise(rows: list[dict], kept: list[dict], min_pixels: int) -> list[dict]:
    """Per ISO and component: the mean of every metric over the images, how many images the
    model beats the input (and each baseline) on, the worst margin over the input; per
    ISO, the noise kept per brightness bin (model and exact maps)."""
    out = []
    for iso in sorted({r["iso"] for r in rows}):
        for c in dict.fromkeys(r["component"] for r in rows):
            sel = [r for r in rows if r["iso"] == iso and r["component"] == c]
            if not sel:
                continue
            keys = [k for k in sel[0] if k.startswith(("psnr_", "ssim_"))]
            row = {"iso": iso, "component": c, "images": len(sel)}
            row.update({k: float(np.mean([r[k] for r in sel])) for k in keys})
            margin = [r["psnr_model"] - r["psnr_input"] for r in sel]
            row["beats_input"] = int(sum(d > 0 for d in margin))
            row["worst_margin_over_input"] = float(min(margin))
            for k in keys:
                if k.startswith("psnr_") and k not in ("psnr_input", "psnr_model"):
                    row[f"beats_{k[5:]}"] = int(sum(r["psnr_model"] > r[k] for r in sel))
            out.append(row)
        for which in ("model", "exact"):
            acc = [np.asarray(k["accum"]) for k in kept if k["iso"] == iso and k["maps"] == which]
            if acc:
                nk = NoiseKept()
                nk.s = np.sum(acc, axis=0)
                bins = nk.rows(min_pixels)
                row = {"iso": iso, "component": f"noise_kept_{which}", "bins": bins}
                out.append({**row, "worst": NoiseKept.worst(bins)})
    return out


def evaluate_components(
    model,
    items: list,
    isos,
    baselines: dict | None = None,
    seed: int = 0,
    tile: int = 256,
    overlap: int = 64,
    cache=None,
    lens_cache: str | None = None,
    min_pixels: int = 5000,
    progress: bool = True,
) -> dict:
    """Evaluate a components model (its card's chain) on photographs with depth
    (:class:`.depth_sets.DepthImage`)."""
    from tqdm import tqdm

    from residual_train.evaluate.run import _Cache, card_bank

    chain = card_chain(model.card)
    require(set(model.heads) == set(chain.names), f"model heads {model.heads}, card {chain.names}")
    base = {c: list(v) for c, v in (baselines or DEFAULT_BASELINES).items() if c in chain}
    for c, names in base.items():
        unknown = [b for b in names if b not in BASELINES_BY_COMPONENT[c]]
        require(
            not unknown,
            f"baselines.{c}: unknown {unknown}; known: {sorted(BASELINES_BY_COMPONENT[c])}",
        )
    require(bool(items), "no photographs with depth to evaluate")
    bank = card_bank(model.card, lens_cache)
    cache = cache if cache is not None else _Cache(None)
    rows, kept = [], []
    for i, item in enumerate(tqdm(items, desc="evaluating", unit="img", disable=not progress)):
        r = evaluate_photograph(model, chain, bank, item, isos, seed, i, base, cache, tile, overlap)
        rows += r["rows"]
        kept += r["kept"]
    return {
        "model": {
            "path": str(model.path),
            "components": list(chain.names),
            "version": model.card.registry_version,
            "views": model.views,
        },
        "component_settings": model.card.component_settings,
        "lens": model.card.lens,
        "isos": [float(v) for v in isos],
        "images": [it.name for it in items],
        "depth_sources": {it.name: it.source for it in items},
        "baselines": base,
        "seed": seed,
        "per_iso": summarise(rows, kept, min_pixels),
        "per_image": rows,
        "noise_kept": [{k: v for k, v in r.items() if k != "accum"} for r in kept],
    }
