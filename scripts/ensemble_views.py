"""Which views should each map of a self-ensemble average? The measurement behind
``self_ensemble`` (docs/quality.md, "Self-ensemble"; residual_train/deploy/ensemble.py).

    python scripts/ensemble_views.py [--model default] [--images bsd400_val]
        [--isos 100 400 1600 6400] [--shrink 2] [--workers 2] [--out eval/views.json]
        [--colours]

Renders each photograph as ``evaluate`` does (same seed, same noise), runs the model once on
each of the eight flips and quarter turns of the frame, and composes (a = b = 1) with each
map averaged over the views of each variant below. Prints, per ISO, each variant's mean PSNR
and its gain over ``trained`` (both maps over the flips training used) with the standard
error of the per-image differences; writes the per-image PSNRs to ``--out``. With
``--colours`` the noise map also averages the six orders of the colour planes (the σ map
permuted with them; 48 passes instead of 8: ``colours``, ``noise_all_colours``). Choose on
validation photographs only (docs/design.md §8).
"""

from __future__ import annotations

import argparse
import itertools
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


def _init(model_ref: str, trained: tuple[int, ...], colours: bool = False) -> None:
    """Each worker loads the model and its lens bank once."""
    from residual_train.deploy import load_model
    from residual_train.evaluate.run import card_bank, card_noise_kind

    m = load_model(model_ref, threads=1)
    _worker.update(model=m, bank=card_bank(m.card), kind=card_noise_kind(m.card))
    _worker["variants"] = variants(trained)
    _worker["orders"] = list(itertools.permutations(range(3))) if colours else [(0, 1, 2)]


def _views(m, x: np.ndarray, iso: float, order: tuple[int, ...]) -> dict[int, dict]:
    """The maps of each flip and turn of ``x`` with its colour planes in ``order`` (the σ
    map of the permuted planes follows them), turned back and put back in order."""
    from data_gen.noise import NoiseModel
    from data_gen.optics.symmetry import ALL, INVERSE, dihedral
    from residual_train.deploy.tiling import infer_tiled

    noise = m.noise_model(iso)
    p, back = list(order), np.argsort(order)
    permuted = NoiseModel(noise.A[p], noise.B[p])
    out = {}
    for t in ALL:
        v = np.ascontiguousarray(dihedral(x[p], t), dtype=np.float32)
        if p == [0, 1, 2]:  # the frame's own colours: what deploy and evaluate run
            maps = m.predict(v, iso=iso)
        else:
            maps = infer_tiled(lambda b: m._run(b, permuted), v, m.heads, multiple=m.card.stride)
        out[t] = {h: dihedral(r, INVERSE[t])[back] for h, r in maps.items()}
    return out


def _image(args: tuple) -> list[dict]:
    from data_gen.optics.symmetry import ALL
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
        orders = {o: _views(m, x, iso, o) for o in _worker["orders"]}
        back = orders[(0, 1, 2)]
        row = {"image": name, "iso": float(iso)}
        for k, views in _worker["variants"].items():
            maps = {h: np.mean([back[t][h] for t in v], axis=0) for h, v in views.items()}
            y = compose_blur_noise(x, maps["blur"], maps["noise"], 1, 1, noise)
            row[k] = psnr(y, clean)
        if len(orders) > 1:  # the blur map of the trained views, as in noise_all
            blur = np.mean([back[t]["blur"] for t in _worker["variants"]["noise_all"]["blur"]], 0)
            for k, ts in (("colours", (0,)), ("noise_all_colours", ALL)):
                n = np.mean([v[t]["noise"] for v in orders.values() for t in ts], axis=0)
                row[k] = psnr(compose_blur_noise(x, blur, n, 1, 1, noise), clean)
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
                f"  {k:17s} {np.mean([r[k] for r in rs]):.3f} dB  {d.mean():+.3f} vs {base} "
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
    p.add_argument("--colours", action="store_true")
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
        if a.colours and m.field_input:
            raise InputError(f"--model {a.model} reads positions: --colours is for other models")
        images = load_images(a.images, a.shrink)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    jobs = [(i, n, im, a.isos, a.seed) for i, (n, im) in enumerate(images)]
    with ProcessPoolExecutor(
        max(1, a.workers),
        mp_context=mp.get_context("spawn"),
        initializer=_init,
        initargs=(a.model, m.trained_transforms(), a.colours),
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
