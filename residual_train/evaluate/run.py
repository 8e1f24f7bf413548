"""Evaluation on real photographs rendered through a model card's lens and sensor.

For each image and ISO: render the whole frame with the generator's physics (every pixel
blurred with the bank PSF of its position, one noise realisation), run the model once,
compose, and measure against the rendering's ground truth, next to the classical
pipelines of :mod:`.baselines` (cached on disk: they do not depend on the model).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from data_gen import __version__
from data_gen.core.environment import environment
from data_gen.core.errors import require
from data_gen.core.typed import Record, parse
from data_gen.noise_kinds import DEFAULT
from data_gen.optics import PSFBank, build_bank
from data_gen.render import render_frame
from data_gen.sensor import build_sensor
from residual_train.deploy.compose import compose_blur_noise
from residual_train.evaluate.baselines import BASELINES
from residual_train.evaluate.images import image_set, set_role
from residual_train.evaluate.metrics import NoiseKept, Pearson, error_bands, psnr, ssim
from residual_train.release.card import ModelCard, as_card

KEEP_PANELS = 3


def x_of(r: dict) -> np.ndarray:
    return r["noise_blur"]  # images whose arrays are kept for the page's panels


def default_cache() -> Path:
    return environment().cache_root / "eval"


class SensorISO(Record):
    """What :func:`card_isos` reads of the sensor settings a card's noise table was computed
    from (``source``): their ``iso``, a list of values, one value or a ``{min, max}`` range
    (absent or null: a calibrated table's own ISOs)."""

    iso: list[float] | float | dict[str, float] | None = None

    @property
    def listed(self) -> list[float]:
        """The values the settings list (none for a single value or a range)."""
        return list(self.iso) if isinstance(self.iso, list) else []


def card_isos(card: ModelCard | Mapping) -> list[float]:
    """The ISO values a card's sensor lists, else 4 log-spaced values over its range."""
    table = as_card(card).sensor_noise()
    listed = parse(SensorISO, table.source, "model card: noise_model.source").listed
    if listed:
        return listed
    lo, hi = table.range
    return [float(v) for v in np.geomspace(lo, hi, 4).round(3)]


def card_noise_kind(card: ModelCard | Mapping):
    """The noise kind of the sensor named in a model card (``sensor.noise``; the default
    Poisson–Gaussian when the card names none), so that evaluation renders the noise the
    model was trained on."""
    card = as_card(card)
    name = card.noise_kind()
    if name == DEFAULT:
        return None
    layout = card.layout
    require(layout == "rgb", f"noise kind {name}: evaluation renders RGB, not {layout}")
    return build_sensor(card.noise_model.source, card.channels).noise


def card_bank(card: ModelCard | Mapping, cache: str | None = None) -> PSFBank:
    """The PSF bank of the lens named in a model card."""
    card = as_card(card)
    require(bool(card.lens), "the model card names no lens: cannot render evaluation images")
    return build_bank(card.lens, card.channels, cache)


class _Cache:
    """Baseline outputs on disk, keyed by everything they depend on."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def get(self, name: str, parts: list[np.ndarray], fn) -> np.ndarray:
        if self.root is None:
            return fn()
        h = hashlib.sha256(f"{name}/{__version__}".encode())
        for p in parts:
            h.update(np.ascontiguousarray(p).tobytes())
        path = self.root / f"{name}-{h.hexdigest()[:24]}.npy"
        if path.is_file():
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed
        y = fn()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to the name
            np.save(f, y)
        os.replace(tmp, path)
        return y


def _scores(y: np.ndarray, clean: np.ndarray, who: str) -> dict:
    """PSNR, SSIM and where the error lies (:func:`error_bands`) of the output ``who``."""
    return {
        f"psnr_{who}": psnr(y, clean),
        f"ssim_{who}": ssim(y, clean),
        f"bands_{who}": error_bands(y, clean),
    }


def evaluate_image(
    model,
    bank: PSFBank,
    name: str,
    img: np.ndarray,
    isos,
    seed: int,
    index: int,
    baselines,
    cache: _Cache,
    tile: int,
    overlap: int,
    keep: bool,
) -> dict:
    """Every metric of one image at every ISO (and, when ``keep``, the arrays)."""
    rows, accum, arrays = [], {}, {}
    kind = card_noise_kind(model.card)
    for iso in isos:
        noise = model.noise_model(iso)
        rng = np.random.default_rng([seed, index, round(iso * 1000)])
        r = render_frame(img, bank, noise, rng, kind=kind, iso=iso)
        x, clean = r["noise_blur"], r["clean"]
        pos = r["psf_index"] if getattr(model, "field_input", False) else None
        maps = model.predict(x, tile=tile, overlap=overlap, iso=iso, psf_index=pos)
        rb, rn = maps["blur"], maps["noise"]
        full = compose_blur_noise(x, rb, rn, 1, 1, noise)
        sharp_noisy = compose_blur_noise(x, rb, rn, 1, 0, noise)  # a = 1, b = 0
        rb_t, rn_t = r["noise"] - x, r["blur"] - x  # the rendering's exact residuals
        row = {
            "image": name,
            "iso": float(iso),
            "psnr_input": psnr(x, clean),
            "psnr_blur_head": psnr(x + rb, r["noise"]),
            "psnr_blur_head_input": psnr(x, r["noise"]),
            "psnr_noise_head": psnr(x + rn, r["blur"]),
            "psnr_noise_head_input": psnr(x, r["blur"]),
            "ssim_input": ssim(x, clean),
            **_scores(full, clean, "model"),
        }
        outs = {"model": full}
        key = [x, clean, bank.psfs, r["psf_index"], noise.A, noise.B]
        for b in baselines:
            fn = BASELINES[b]
            y = cache.get(
                b,
                key,
                lambda fn=fn, r=r, noise=noise: fn(
                    x_of(r), bank.psfs, r["psf_index"], noise, r["clean"]
                ),
            )
            row.update(_scores(y, clean, b))
            row[f"margin_over_{b}"] = row["psnr_model"] - row[f"psnr_{b}"]
            outs[b] = y
        fid = Pearson().add(rn, rn_t)
        row["noise_corr"], row["noise_std_ratio"] = fid.corr, fid.std_ratio
        kept = sharp_noisy - full  # the noise put back at b = 0: −k·R̂_n
        sharp_true = compose_blur_noise(x, rb_t, rn_t, 1, 0, noise)
        row["range_a1_b0"] = [float(sharp_noisy.min()), float(sharp_noisy.max())]
        row["range_clean"] = [float(clean.min()), float(clean.max())]
        accum[float(iso)] = {
            "fidelity": fid,
            "kept": NoiseKept().add(kept, clean, noise),
            "kept_total": NoiseKept().add(sharp_noisy - clean, clean, noise),
            "kept_true": NoiseKept().add(sharp_true - clean, clean, noise),
            # had R̂_n been reused without rescaling (y = x + R̂_b at b = 0)
            "kept_unscaled": NoiseKept().add(-rn, clean, noise),
        }
        rows.append(row)
        if keep:
            arrays[float(iso)] = {
                **{k: r[k] for k in ("clean", "noise_blur")},
                **outs,
                "R_blur": rb,
                "R_noise": rn,
                "a1_b0": sharp_noisy,
                "noise": noise,
            }
    return {"rows": rows, "accum": accum, "arrays": arrays}


_worker: dict = {}


def _init(
    model_ref: str, registry: str | None, lens_cache: str | None, ensemble: bool | str
) -> None:
    from data_gen.core.cli import die_with_parent
    from residual_train.deploy import load_model

    die_with_parent()

    m = load_model(model_ref, registry, threads=1, self_ensemble=ensemble)
    _worker.update(model=m, bank=card_bank(m.card, lens_cache))


def _task(args: tuple) -> dict:
    return evaluate_image(_worker["model"], _worker["bank"], *args)


def summarise(rows: list[dict], accum: list[dict], isos, baselines, min_pixels: int) -> list[dict]:
    """Per-ISO means over images, pooled noise fidelity and noise kept per brightness bin."""
    out = []
    for iso in isos:
        rs = [r for r in rows if r["iso"] == float(iso)]
        keys = [k for k in rs[0] if k.startswith(("psnr_", "ssim_"))]  # means over images
        row = {
            "iso": float(iso),
            "images": len(rs),
            **{k: float(np.mean([r[k] for r in rs])) for k in keys},
            **{  # where the error lies (metrics.error_bands), mean over images
                f"bands_{m}": {
                    k: float(np.mean([r[f"bands_{m}"][k] for r in rs])) for k in rs[0][f"bands_{m}"]
                }
                for m in ("model", *baselines)
            },
        }
        fid, kept, total, true, unscaled = Pearson(), *(NoiseKept() for _ in range(4))
        for a in accum:
            fid += a[float(iso)]["fidelity"]
            kept += a[float(iso)]["kept"]
            total += a[float(iso)]["kept_total"]
            true += a[float(iso)]["kept_true"]
            unscaled += a[float(iso)]["kept_unscaled"]
        row["noise_corr"], row["noise_std_ratio"] = fid.corr, fid.std_ratio
        row["noise_kept"] = kept.rows(min_pixels)
        row["noise_kept_worst"] = NoiseKept.worst(row["noise_kept"])
        row["noise_kept_total"] = total.rows(min_pixels)
        row["noise_kept_total_worst"] = NoiseKept.worst(row["noise_kept_total"])
        row["noise_kept_true_residuals"] = true.rows(min_pixels)
        row["noise_kept_unscaled"] = unscaled.rows(min_pixels)
        for b in baselines:
            row[f"gain_over_{b}"] = row["psnr_model"] - row[f"psnr_{b}"]
        lo = min(r["range_a1_b0"][0] for r in rs)
        hi = max(r["range_a1_b0"][1] for r in rs)
        row["range_a1_b0"] = [lo, hi]
        row["range_clean"] = [
            min(r["range_clean"][0] for r in rs),
            max(r["range_clean"][1] for r in rs),
        ]
        out.append(row)
    return out


def summarise_sets(rows: list[dict], isos, baselines) -> dict:
    """Per set of images (:func:`~residual_train.evaluate.images.image_set`) and ISO: the
    mean PSNR of the model and of each baseline, and against each baseline ``b`` the mean
    margin (``gain_over_b``), the share of images where the model is ahead
    (``share_beating_b``) and the worst image's margin and name (``worst_margin_over_b``,
    ``worst_image_b``)."""
    out = {}
    for label in dict.fromkeys(image_set(r["image"]) for r in rows):
        per_iso = []
        for iso in isos:
            rs = [r for r in rows if r["iso"] == float(iso) and image_set(r["image"]) == label]
            row = {
                "iso": float(iso),
                "images": len(rs),
                **{
                    f"psnr_{m}": float(np.mean([r[f"psnr_{m}"] for r in rs]))
                    for m in ("input", "model", *baselines)
                },
            }
            for b in baselines:
                margins = np.array([r[f"margin_over_{b}"] for r in rs])
                worst = int(np.argmin(margins))
                row[f"gain_over_{b}"] = float(margins.mean())
                row[f"share_beating_{b}"] = float((margins > 0).mean())
                row[f"worst_margin_over_{b}"] = float(margins[worst])
                row[f"worst_image_{b}"] = rs[worst]["image"]
            per_iso.append(row)
        n = len({r["image"] for r in rows if image_set(r["image"]) == label})
        out[label] = {"role": set_role(label), "images": n, "per_iso": per_iso}
    return out


def evaluate(
    model_ref: str,
    images: list[tuple[str, np.ndarray]],
    isos=None,
    registry: str | None = None,
    baselines=("wiener_wavelet", "bm3d_wiener"),
    seed: int = 0,
    workers: int = 1,
    tile: int = 256,
    overlap: int = 64,
    min_pixels: int = 5000,
    cache: Path | None = None,
    lens_cache: str | None = None,
    progress: bool = True,
    self_ensemble: bool | str = False,
) -> dict:
    """Evaluate ``model_ref`` (export dir, ``NAME[:TAG]`` in ``registry``, or ``default``);
    ``self_ensemble`` (``false``, ``trained`` or ``true``): its maps averaged over the flips
    it was trained with, the noise map over all eight with ``true``
    (:mod:`residual_train.deploy.ensemble`)."""
    from residual_train.deploy import load_model

    model = load_model(model_ref, registry, self_ensemble=self_ensemble)
    require(
        set(model.heads) == {"blur", "noise"},
        f"model = {model_ref!r} has heads {model.heads}; evaluation needs a blur and a noise head",
    )
    require(
        model.card.layout == "rgb",
        f"model = {model_ref!r} takes {model.card.layout} data; evaluation renders RGB photographs",
    )
    unknown = [b for b in baselines if b not in BASELINES]
    require(not unknown, f"baselines: unknown {unknown}; known: {sorted(BASELINES)}")
    isos = [float(i) for i in (isos or card_isos(model.card))]
    for iso in isos:  # every ISO inside the card's range, before any work starts
        model.noise_model(iso)
    bank = card_bank(model.card, lens_cache)
    require(bool(images), "no images to evaluate")
    k = bank.size
    small = [n for n, im in images if min(im.shape[1:]) < k + 16]
    require(not small, f"images smaller than the PSF ({k} px) + 16 after shrinking: {small[:5]}")
    jobs = [
        (name, img, isos, seed, i, list(baselines), _Cache(cache), tile, overlap, i < KEEP_PANELS)
        for i, (name, img) in enumerate(images)
    ]
    results = _run_jobs(model, bank, jobs, workers, lens_cache, progress)
    rows = [row for r in results for row in r["rows"]]
    per_iso = summarise(rows, [r["accum"] for r in results], isos, baselines, min_pixels)
    per_set = summarise_sets(rows, isos, baselines)
    return {
        "model": {
            "ref": model_ref,
            "path": str(model.path),
            "components": model.heads,
            "arch": model.card.model,
            "version": model.card.registry_version,
            "views": model.views,
        },
        "lens": model.card.lens,
        "isos": isos,
        "images": [n for n, _ in images],
        "sets": {k: v["role"] for k, v in per_set.items()},
        "baselines": list(baselines),
        "seed": seed,
        "per_iso": per_iso,
        "per_set": per_set,
        "per_image": rows,
        "arrays": {
            n: r["arrays"] for (n, _), r in zip(images, results, strict=True) if r["arrays"]
        },
    }


def _run_jobs(model, bank, jobs: list, workers: int, lens_cache, progress: bool) -> list[dict]:
    """:func:`evaluate_image` of each job, in order: here (``workers <= 1``) or in ``workers``
    spawned processes that load the same export and lens bank."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="evaluating", unit="img", disable=not progress)
    results = []
    if workers <= 1:
        for j in jobs:
            results.append(evaluate_image(model, bank, *j))
            bar.update()
    else:
        ref = str(model.path)  # resolved export directory: workers load the same files
        ctx = mp.get_context("spawn")  # forked children of a process with thread pools hang
        with ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_init,
            initargs=(ref, None, lens_cache, model.self_ensemble),
        ) as ex:
            for r in ex.map(_task, jobs):
                results.append(r)
                bar.update()
    bar.close()
    return results


def write_metrics(result: dict, out: Path) -> Path:
    """``metrics.json`` (everything but the arrays)."""
    doc = {k: v for k, v in result.items() if k != "arrays"}
    p = out / "metrics.json"
    p.write_text(
        json.dumps(
            doc,
            indent=2,
            default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o),
        )
        + "\n"
    )
    return p
