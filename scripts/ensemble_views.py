"""Which views should each map of a self-ensemble average? The measurement behind
``self_ensemble`` (docs/quality.md, "Self-ensemble"; residual_train/deploy/ensemble.py).

    python scripts/ensemble_views.py [--model default] [--images bsd400_val]
        [--isos 100 400 1600 6400] [--shrink 2] [--workers 2] [--out eval/views.json]

Renders each photograph as ``evaluate`` does (same seed, same noise), runs the model once on
each of the eight flips and quarter turns of the frame, and composes (a = b = 1) with each
map averaged over the views of each variant below. Prints, per ISO, each variant's mean PSNR
and its gain over ``trained`` (both maps over the flips training used) with the standard
error of the per-image differences; writes the per-image PSNRs to ``--out``. Choose on
validation photographs only (docs/design.md §8).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def variants(trained: tuple[int, ...]) -> dict[str, dict[str, tuple[int, ...]]]:
    """name -> {map: views}: the candidates compared."""
    from data_gen.optics.symmetry import ALL

    flips = (0, 2, 4, 6)  # identity, rot180, flip-x, flip-y
    return {
        "plain": {"blur": (0,), "noise": (0,)},
        "trained": {"blur": trained, "noise": trained},
        "noise_flips": {"blur": trained, "noise": tuple(dict.fromkeys(trained + flips))},
        "noise_all": {"blur": trained, "noise": ALL},  # self_ensemble=true for default
        "both_flips": {"blur": flips, "noise": flips},
        "both_all": {"blur": ALL, "noise": ALL},
    }


_worker: dict = {}


def _init(model_ref: str, trained: tuple[int, ...]) -> None:
    """Each worker loads the model and its lens bank once."""
    from residual_train.deploy import load_model
    from residual_train.evaluate.run import card_bank, card_noise_kind

    m = load_model(model_ref, threads=1)
    _worker.update(model=m, bank=card_bank(m.card), kind=card_noise_kind(m.card))
    _worker["variants"] = variants(trained)


def _image(args: tuple) -> list[dict]:
    from data_gen.optics.symmetry import ALL, INVERSE, dihedral
    from data_gen.render import render_frame
    from residual_train.deploy.compose import compose_blur_noise
    from residual_train.evaluate.metrics import psnr

    index, name, img, isos, seed = args
    m, bank, kind = _worker["model"], _worker["bank"], _worker["kind"]
    rows = []
    for iso in isos:
        noise = m.noise_model(iso)
        rng = np.random.default_rng([seed, index, round(iso * 1000)])  # evaluate's draws
        r = render_frame(img, bank, noise, rng, kind=kind, iso=iso)
        x, clean = r["noise_blur"], r["clean"]
        back = {}
        for t in ALL:
            p = m.predict(np.ascontiguousarray(dihedral(x, t)), iso=iso)
            back[t] = {h: dihedral(v, INVERSE[t]) for h, v in p.items()}
        row = {"image": name, "iso": float(iso)}
        for k, views in _worker["variants"].items():
            maps = {h: np.mean([back[t][h] for t in v], axis=0) for h, v in views.items()}
            y = compose_blur_noise(x, maps["blur"], maps["noise"], 1, 1, noise)
            row[k] = psnr(y, clean)
        rows.append(row)
    return rows


def summary(rows: list[dict], base: str = "trained") -> list[str]:
    lines = []
    for iso in sorted({r["iso"] for r in rows}):
        rs = [r for r in rows if r["iso"] == iso]
        lines.append(f"ISO {iso:g} ({len(rs)} images)")
        for k in (k for k in rs[0] if k not in ("image", "iso")):
            d = np.array([r[k] - r[base] for r in rs])
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
            z = f"{d.mean() / se:+.1f} SE" if se > 0 else "—"
            lines.append(
                f"  {k:12s} {np.mean([r[k] for r in rs]):.3f} dB  {d.mean():+.3f} vs {base} "
                f"({z}), ahead on {100 * (d > 0).mean():.0f} %, worst {d.min():+.3f}"
            )
    return lines


def main() -> int:
    p = argparse.ArgumentParser(usage=__doc__.split("\n\n")[1].strip())
    p.add_argument("--model", default="default")
    p.add_argument("--images", default="bsd400_val")
    p.add_argument("--isos", type=float, nargs="+", default=[100, 400, 1600, 6400])
    p.add_argument("--shrink", type=float, default=2.0)  # evaluate's shrink
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="eval/views.json")
    a = p.parse_args()
    from data_gen.core.errors import InputError
    from residual_train.deploy import load_model
    from residual_train.evaluate.images import load_images

    try:
        m = load_model(a.model, self_ensemble=True)
        for iso in a.isos:
            m.noise_model(iso)
        require_two = set(m.heads) == {"blur", "noise"} and m.card.layout == "rgb"
        if not require_two:
            raise InputError(f"--model {a.model}: needs an RGB blur + noise model, not {m.heads}")
        images = load_images(a.images, a.shrink)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    jobs = [(i, n, im, a.isos, a.seed) for i, (n, im) in enumerate(images)]
    with ProcessPoolExecutor(
        max(1, a.workers),
        mp_context=mp.get_context("spawn"),
        initializer=_init,
        initargs=(a.model, m.trained_transforms()),
    ) as ex:
        rows = [r for rs in ex.map(_image, jobs) for r in rs]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": a.model, "images": a.images, "per_image": rows}))
    print("\n".join(summary(rows)))
    print(f"per-image PSNRs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
