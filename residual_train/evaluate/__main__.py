"""``python -m residual_train.evaluate model=REF images=DIR|builtin out=DIR [isos=[...]]
[registry=DIR]``: quality on real photographs against classical pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Strict

from data_gen.core.cli import run_app
from data_gen.core.errors import require
from data_gen.core.paths import APPS, filled_atomically
from data_gen.core.typed import Settings, Text
from data_gen.core.values import numbers
from data_gen.sources import check_linearize
from residual_train.deploy.ensemble import CHOICES
from residual_train.typed import Bool, Int, Num, OneOf, checked, parse

Name = Text | Annotated[int, Strict()]  # a model or set name Hydra read as a number


class EvaluateSettings(Settings):
    """``conf/apps/evaluate.yaml``, typed; its defaults are there (one place). Values are
    checked by :mod:`data_gen.core.values`' helpers (their one-line wording)."""

    model: Name
    registry: Text | None
    images: Name | list[Name]
    shrink: Num(lo=1)
    linearize: Annotated[bool | str, checked(check_linearize)]
    max_images: Int(1, none_ok=True)
    max_size: Int(16, none_ok=True)
    isos: Annotated[list[float] | None, checked(numbers, positive=True, none_ok=True)]
    baselines: list[Text] | None
    component_baselines: dict[Text, list[Text] | Text | None] | None
    out: Text | None  # required: null or ??? is refused by check_settings
    seed: Int(0)
    workers: Int(1)
    tile: Int(8)
    overlap: Int(4)
    self_ensemble: OneOf(*CHOICES)
    min_bin_pixels: Int(1)
    cache: Text | None
    bank_cache: Text | None
    progress: Bool

    @property
    def cache_dir(self) -> Path | None:
        return Path(self.cache) if self.cache else None


def check_settings(cfg: dict) -> EvaluateSettings:
    """The values of ``conf/apps/evaluate.yaml``, typed (one line otherwise)."""
    s = parse(EvaluateSettings, cfg, "")
    require(s.out not in (None, "???"), "out is missing: give the output folder as out=DIR")
    return s


def run(cfg: dict) -> dict:
    from residual_train.deploy import load_model
    from residual_train.evaluate import evaluate, load_images, write_metrics, write_page

    s = check_settings(cfg)
    out = Path(s.out)
    require(
        not (out.exists() and any(out.iterdir())),
        f"out = {str(out)!r} already holds files; nothing is overwritten",
    )
    model = load_model(str(s.model), s.registry, self_ensemble=s.self_ensemble)
    if set(model.heads) != {"blur", "noise"}:
        return run_components(cfg, s, model, out)
    images = load_images(s.images, s.shrink, s.linearize, s.max_images, s.max_size)
    result = evaluate(
        str(s.model),
        images,
        s.isos,
        s.registry,
        list(s.baselines or []),
        s.seed,
        s.workers,
        s.tile,
        s.overlap,
        s.min_bin_pixels,
        s.cache_dir,
        s.bank_cache,
        s.progress,
        s.self_ensemble,
    )
    with filled_atomically(out) as tmp:  # out appears complete, or not at all
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        metrics = write_metrics(result, tmp)
        index = write_page(result, tmp)
    return {
        "metrics": str(out / metrics.name),
        "page": str(out / index.relative_to(tmp)),
        "per_iso": [
            {
                k: r[k]
                for k in r
                if k.startswith(("psnr_model", "gain_", "noise_corr")) or k == "iso"
            }
            for r in result["per_iso"]
        ],
        "per_set": {
            name: [
                {
                    k: r[k]
                    for k in r
                    if k == "iso"
                    or k.startswith(
                        (
                            "psnr_model",
                            "gain_over_bm3d",
                            "share_beating_bm3d",
                            "worst_margin_over_bm3d",
                        )
                    )
                }
                for r in per_set["per_iso"]
            ]
            for name, per_set in result["per_set"].items()
        },
    }


def run_components(cfg: dict, s: EvaluateSettings, model, out: Path) -> dict:
    """A model of more components: photographs with measured depth (``images=depth``: every
    set available, ``motorcycle`` always; or a list of set names)."""
    from residual_train.evaluate import depth_sets
    from residual_train.evaluate.components import evaluate_components
    from residual_train.evaluate.page import write_components_page
    from residual_train.evaluate.run import _Cache, card_isos, write_metrics

    names = s.images
    if names in ("depth", "builtin"):
        names, missing = depth_sets.available()
        for n, why in missing.items():
            print(f"note: depth set {n} skipped: {why}")
    names = [names] if isinstance(names, str) else list(names)
    shrink = s.shrink
    require(shrink == int(shrink), f"shrink = {shrink}: an integer >= 1 for photographs with depth")
    items = [depth_sets.load(n, shrink_factor=int(shrink)) for n in names]
    if s.max_images:
        items = items[: s.max_images]
    if s.max_size:
        items = [depth_sets.crop_centre(it, s.max_size) for it in items]
    isos = s.isos or card_isos(model.card)
    for iso in isos:
        model.noise_model(iso)
    result = evaluate_components(
        model,
        items,
        isos,
        s.component_baselines,
        s.seed,
        s.tile,
        s.overlap,
        _Cache(s.cache_dir),
        s.bank_cache,
        s.min_bin_pixels,
        s.progress,
    )
    with filled_atomically(out) as tmp:  # out appears complete, or not at all
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        write_metrics(result, tmp)
        write_components_page(result, tmp)
    metrics, index = out / "metrics.json", out / "index.html"
    return {
        "metrics": str(metrics),
        "page": str(index),
        "per_iso": [
            {k: r[k] for k in ("iso", "component", "psnr_input", "psnr_model") if k in r}
            for r in result["per_iso"]
            if "bins" not in r
        ],
    }


def main() -> None:
    run_app(APPS, "evaluate", run)


if __name__ == "__main__":
    main()
