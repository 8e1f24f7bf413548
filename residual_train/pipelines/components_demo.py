"""``python -m residual_train.pipelines.demo profile=components``: the shipped components
model (relight, fog, defocus, lens blur, noise) on real photographs with measured depth.

* ``profile=components``: no training. The shipped ``components`` model is evaluated on every
  photograph with depth there is (``../shared/data/depth`` and scikit-image's motorcycle) at
  ISO 400 and 3200 next to each component's classical baselines
  (:mod:`residual_train.evaluate.components`: ``OUT/eval/index.html``), and two strengths
  grids of correlated components are composed from one pass on the motorcycle
  (``OUT/report/index.html``).
* ``profile=components_train`` (about 12 minutes) and ``components_tiny`` (seconds, tests):
  relight + fog + blur + noise, end to end, on dead leaves with exact depth:

1. generates a schema-v2 dataset (``components=[relight,fog,blur,noise]``, dead leaves with
   depth, the ``soft_prime`` lens, the ``generic_aps_c`` sensor);
2. trains one U-Net with four heads (``model.heads=auto``) and exports / publishes it;
3. renders the same chain on a real photograph with a real depth map it never saw
   (scikit-image's Middlebury motorcycle, depth from its disparity), runs the exported
   model once and compares each predicted residual with the true (peeling) one;
4. writes ``OUT/report/index.html``: each residual map (true, predicted), the per-component
   PSNRs (validation and photograph), and two strengths grids of correlated components
   (relight × noise: the kept noise follows the brightness change; fog × blur: the kept
   blur follows the light the fog removal restored) composed from the one network pass
   in physical order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen.core.cli import compose_config
from data_gen.core.errors import require
from data_gen.core.paths import APPS, CONF
from residual_train.pipelines.metrics import read_metrics

COMPONENTS = ("relight", "fog", "blur", "noise")
# pairs of correlated strengths: a smooth correction × a component it transports (the kept
# noise follows the brightness change; the kept blur follows the restored light)
GRIDS = (("relight", "noise"), ("fog", "blur"), ("fog", "noise"))
STRENGTHS = (0.0, 0.5, 1.0)
EVAL_ISO = 1600


@dataclass(frozen=True)
class ShippedProfile:
    """A shipped model evaluated on photographs with depth; no training."""

    shipped: str  # the shipped model's name
    isos: tuple[int, ...]  # the evaluation's ISOs
    images: str | tuple[str, ...]  # a set name (``depth``: every set there is), or names
    max_size: int | None = None  # centre crop of each photograph (None: whole; grids: 256)


@dataclass(frozen=True)
class TrainedProfile:
    """A components model generated, trained and published here, then evaluated on one
    photograph with depth."""

    data: tuple[str, ...]  # overrides of the data generation (conf/data_gen.yaml)
    train: tuple[str, ...]  # overrides of the training (conf/train.yaml)
    eval_size: int  # the photograph's centre crop, px


PROFILES: dict[str, ShippedProfile | TrainedProfile] = {
    # the shipped model on the photographs with depth (minutes: the classical baselines)
    "components": ShippedProfile("components", isos=(400, 3200), images="depth"),
    # seconds: the same wiring on the motorcycle alone, small, one ISO (tests)
    "components_shipped_tiny": ShippedProfile(
        "components", isos=(400,), images=("motorcycle",), max_size=160
    ),
    # train one yourself: about 12 minutes on 2 CPU cores
    "components_train": TrainedProfile(
        data=(
            "shards=4",
            "samples_per_shard=256",
            "patch_size=48",
            "source.size=256",
            "workers=2",
            "sensor.iso=[400,1600]",
        ),
        train=(
            "experiment=tiny",
            "data.crop=48",
            "data.batch_size=16",
            "model.width=16",
            "model.depth=3",
            "trainer.max_epochs=10",
            "optim.lr=1e-3",
            "val.panel_every=0",
        ),
        eval_size=256,
    ),
    # seconds: for tests
    "components_tiny": TrainedProfile(
        data=("shards=3", "samples_per_shard=16", "patch_size=32", "source.size=96"),
        train=("experiment=tiny", "data.crop=32", "trainer.max_epochs=1", "val.panel_every=0"),
        eval_size=64,
    ),
}


def evaluate_photograph(model, chain, psf: np.ndarray, noise, size: int, margin: int) -> dict:
    """The chain rendered on the motorcycle (shrunk 2x, a centre crop of ``size`` px plus
    the margin) with the noise model ``noise`` (ISO :data:`EVAL_ISO`), the model's maps and
    the true peeling residuals."""
    from data_gen.chain import stored_residuals
    from data_gen.render_chain import render_frame
    from data_gen.sources import Frame, shrink, stereo_example
    from residual_train.evaluate.metrics import psnr

    f = stereo_example()
    px = shrink(f.pixels, 2.0)
    z = shrink(f.depth[None], 2.0)[0]
    side = size + 2 * margin
    h, w = px.shape[1:]
    side = min(side, h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    frame = Frame(f.name, px[:, y0 : y0 + side, x0 : x0 + side], z[y0 : y0 + side, x0 : x0 + side])
    arrays, rec = render_frame(frame, chain, psf, noise, np.random.default_rng(7), margin, 0.8)
    x = arrays["input"]
    true = stored_residuals(arrays, chain.names)
    maps = model.predict(x, tile=128, overlap=32, iso=EVAL_ISO)
    rows = []
    for c in chain.names:
        rows.append(
            {
                "component": c,
                "psnr_input": psnr(x, x + true[c]),
                "psnr_model": psnr(x + maps[c], x + true[c]),
            }
        )
    rows.append(
        {
            "component": "all (vs clean)",
            "psnr_input": psnr(x, arrays["clean"]),
            "psnr_model": psnr(x + sum(maps.values()), arrays["clean"]),
        }
    )
    params = {k: np.asarray(v).tolist() for k, v in rec.items()}
    return {
        "x": x,
        "clean": arrays["clean"],
        "true": true,
        "maps": maps,
        "noise": noise,
        "rows": rows,
        "params": params,
        "depth": frame.depth,
    }


def _val_rows(run_dir: Path, heads) -> list[dict]:
    """The last validation's PSNR per head and with every head (``full``), of the input and
    of the model's correction (none without a validation)."""
    last = [r for r in read_metrics(run_dir) if r.validated]
    if not last:
        return []
    r = last[-1]
    return [
        {"component": h, "psnr_input": r.val_psnr_input[h], "psnr_model": r.val_psnr[h]}
        for h in [*heads, "full"]
    ]


def _figures(ev: dict, out: Path) -> list[dict]:
    """The input, every component corrected, the clean photograph and its depth, as PNGs in
    ``out``; returns ``[{"src", "alt", "caption"}]``."""
    from residual_train.evaluate.page import save_image

    x, maps, d = ev["x"], ev["maps"], ev["depth"]
    dn = ((d - d.min()) / max(float(np.ptp(d)), 1e-6))[None].repeat(3, 0)
    shown = [
        (x, "input.png", "input", f"input ({', '.join(maps)} rendered)"),
        (x + sum(maps.values()), "corrected.png", "all", "every component corrected"),
        (ev["clean"], "clean.png", "clean", "clean (the photograph)"),
        (dn**2.2, "depth.png", "depth", f"depth {d.min():.2f}–{d.max():.2f} m"),
    ]
    return [
        {"src": save_image(im, out / name), "alt": alt, "caption": cap}
        for im, name, alt, cap in shown
    ]


def _residual_figures(ev: dict, out: Path) -> list[dict]:
    """Each component's true and predicted residual map on the true map's scale, as PNGs
    in ``out``; returns ``[{"src", "alt", "caption"}]``, true then predicted per map."""
    from residual_train.evaluate.page import save_image

    maps, true = ev["maps"], ev["true"]
    figs = []
    for c in maps:
        scale = max(float(np.abs(true[c]).max()), 1e-6)
        t_png = save_image(true[c] / scale * 0.999, out / f"R_{c}_true.png", residual=True)
        p_png = save_image(
            np.clip(maps[c] / scale, -1, 1) * 0.999, out / f"R_{c}.png", residual=True
        )
        figs.append({"src": t_png, "alt": c, "caption": f"R_{c} true (±{scale:.3f})"})
        figs.append({"src": p_png, "alt": c, "caption": f"R_{c} predicted"})
    return figs


def _grids(ev: dict, out: Path) -> list[dict]:
    """Up to two strengths grids of correlated components (:data:`GRIDS`) composed from the
    one pass's maps, as PNGs in ``out``; returns per grid ``{"first", "second", "rest",
    "cols", "rows": [{"label", "cells"}]}``."""
    from residual_train.deploy.compose import compose, slopes
    from residual_train.evaluate.page import save_image

    x, maps = ev["x"], ev["maps"]
    slope_maps = slopes(x, maps)  # once: they depend on the maps, not the strengths
    grids = []
    for first, second in [g for g in GRIDS if set(g) <= set(maps)][:2]:
        rows = []
        for b in STRENGTHS:
            cells = []
            for a in STRENGTHS:
                st = {first: a, second: b}
                y = compose(x, maps, st, ev["noise"], slope_maps=slope_maps)
                name = f"grid_{first}{a:g}_{second}{b:g}.png"
                save_image(y, out / name)
                cells.append(name)
            rows.append({"label": f"{second} {b:g}", "cells": cells})
        grids.append(
            {
                "first": first,
                "second": second,
                "rest": ", ".join(c for c in maps if c not in (first, second)),
                "cols": [f"{first} {a:g}" for a in STRENGTHS],
                "rows": rows,
            }
        )
    return grids


def write_components_report(
    out: Path, info: dict, ev: dict, val_rows: list[dict], heading: str, about: str
) -> Path:
    """``out/index.html`` (``templates/components_report.html.j2``: ``heading``, then the
    paragraph ``about``, what the model is: text, or :class:`markupsafe.Markup` where it
    carries links), its PNGs and ``report.json``; returns the index's path."""
    from data_gen.core.html import render, table

    out.mkdir(parents=True, exist_ok=True)
    cols = ["component", "psnr_input", "psnr_model"]
    page = render(
        "components_report.html.j2",
        "residual_train.pipelines",
        "residual_train.evaluate",  # the evaluation pages' layout and macros
        title="residual-train: more components",
        heading=heading,
        about=about,
        iso=EVAL_ISO,
        validation=table(val_rows, cols, "{:.2f}") if val_rows else None,
        photograph=table(ev["rows"], cols, "{:.2f}"),
        figures=_figures(ev, out),
        residuals=_residual_figures(ev, out),
        grids=_grids(ev, out),
        info=json.dumps(info, indent=2, default=str),
    )
    index = out / "index.html"
    index.write_text(page)
    summary = {
        "info": info,
        "validation": val_rows,
        "photograph": ev["rows"],
        "params": ev["params"],
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    return index


def run_components_demo(out: Path, profile_name: str, timer) -> Path:
    """The components demo (module docstring); ``timer``: the demo's stage timer."""
    prof = PROFILES[profile_name]
    if isinstance(prof, ShippedProfile):
        return run_shipped(out.resolve(), profile_name, prof, timer)
    return run_trained(out.resolve(), profile_name, prof, timer)


def run_shipped(out: Path, profile_name: str, prof: ShippedProfile, timer) -> Path:
    """The shipped components model: its evaluation on the photographs with depth, then the
    strengths grids on the motorcycle."""
    from data_gen.core.html import Markup
    from residual_train.deploy import load_model, shipped_models
    from residual_train.evaluate.__main__ import run as run_evaluation
    from residual_train.evaluate.components import card_chain
    from residual_train.evaluate.run import card_bank

    name = prof.shipped
    require(
        name in shipped_models(),
        f"profile = {profile_name}: this package ships no {name!r} model; train one with "
        "profile=components_train",
    )
    over = [
        f"model={name}",
        f"out={out / 'eval'}",
        "isos=[" + ",".join(map(str, prof.isos)) + "]",
    ]
    images = prof.images
    over.append(f"images={images}" if isinstance(images, str) else f"images=[{','.join(images)}]")
    if prof.max_size:
        over.append(f"max_size={prof.max_size}")
    cfg = compose_config(APPS, "evaluate", over)
    with timer.stage("evaluate on the photographs with depth"):
        evaluation = run_evaluation(cfg)
    with timer.stage("strengths grids on the motorcycle"):
        model = load_model(name)
        chain = card_chain(model.card)
        bank = card_bank(model.card, cfg["bank_cache"])  # the lens bank the evaluation made
        size = prof.max_size or 256
        ev = evaluate_photograph(
            model, chain, bank.psfs[0], model.noise_model(EVAL_ISO), size, chain.margin(bank.size)
        )
    with timer.stage("report"):
        info = {
            "profile": profile_name,
            "model": str(model.path),
            "components": list(model.heads),
            "evaluation": evaluation["page"],
            "timings_s": timer.stages,
        }
        about = Markup(
            "The shipped <code>{}</code> model ({}): one U-Net with a head per component "
            "(docs/guides/components.md). Its evaluation on every photograph with measured "
            "depth, at ISO {}, next to each component's classical baselines: "
            '<a href="../eval/index.html">eval/index.html</a>.'
        ).format(name, ", ".join(model.heads), ", ".join(map(str, prof.isos)))
        index = write_components_report(
            out / "report", info, ev, [], f"The shipped {name} model", about
        )
    print(f"[demo] evaluation: {evaluation['page']}", flush=True)
    print(f"[demo] report: {index}", flush=True)
    return index


def run_trained(out: Path, profile_name: str, prof: TrainedProfile, timer) -> Path:
    """Generate, train, publish and evaluate a components model of one's own."""
    from data_gen.generate import build_pipeline, generate
    from residual_train.deploy import load_model
    from residual_train.pipelines.steps import train_and_publish

    data_dir, run_dir = out / "data", out / "train"
    with timer.stage("generate data"):
        comp = ["components=[" + ",".join(COMPONENTS) + "]", "+source.depth=[1,20]"]
        data_cfg = compose_config(CONF, "data_gen", [f"out_dir={data_dir}", *comp, *prof.data])
        gen = generate(data_cfg)
    _, result, version = train_and_publish(
        timer, out, data_dir, run_dir, list(prof.train), "components"
    )
    with timer.stage("evaluate on a photograph with depth"):
        pipe = build_pipeline(data_cfg)
        model = load_model("components:latest", out / "registry")
        noise = pipe.sensor.params(EVAL_ISO).model
        ev = evaluate_photograph(
            model, pipe.chain, pipe.bank.psfs[0], noise, prof.eval_size, pipe.margin
        )
    with timer.stage("report"):
        samples = gen["samples"] or int(data_cfg["shards"]) * int(data_cfg["samples_per_shard"])
        info = {
            "profile": profile_name,
            "components": list(COMPONENTS),
            "samples": samples,
            "generator": gen,
            "training": result,
            "published": f"{out / 'registry'} components:{version}",
            "timings_s": timer.stages,
        }
        about = (
            f"One U-Net with a head per component, trained on {samples} dead-leaves patches "
            "with exact depth (schema v2, peeling targets)."
        )
        index = write_components_report(
            out / "report",
            info,
            ev,
            _val_rows(run_dir, COMPONENTS),
            " + ".join(COMPONENTS).capitalize(),
            about,
        )
    print(f"[demo] report: {index}", flush=True)
    return index
