"""``python -m residual_train.evaluate model=REF images=DIR|builtin out=DIR [isos=[...]]
[registry=DIR]``: quality on real photographs against classical pipelines."""

from __future__ import annotations

from pathlib import Path

import yaml

from data_gen.cli import run_app
from data_gen.errors import require
from data_gen.paths import APPS


def run(cfg: dict) -> dict:
    from residual_train.deploy import load_model
    from residual_train.evaluate import evaluate, load_images, write_metrics, write_page

    require(
        cfg.get("out") not in (None, "???"), "out is missing: give the output folder as out=DIR"
    )
    out = Path(cfg["out"])
    require(
        not (out.exists() and any(out.iterdir())),
        f"out = {str(out)!r} already holds files; nothing is overwritten",
    )
    model = load_model(str(cfg["model"]), cfg.get("registry"))
    if set(model.heads) != {"blur", "noise"}:
        return run_components(cfg, model, out)
    images = load_images(
        cfg["images"],
        float(cfg["shrink"]),
        bool(cfg["linearize"]),
        cfg["max_images"],
        cfg.get("max_size"),
    )
    result = evaluate(
        str(cfg["model"]),
        images,
        cfg.get("isos"),
        cfg.get("registry"),
        list(cfg["baselines"] or []),
        int(cfg["seed"]),
        int(cfg["workers"]),
        int(cfg["tile"]),
        int(cfg["overlap"]),
        int(cfg["min_bin_pixels"]),
        Path(cfg["cache"]) if cfg.get("cache") else None,
        cfg.get("bank_cache"),
        bool(cfg["progress"]),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    metrics = write_metrics(result, out)
    index = write_page(result, out)
    return {
        "metrics": str(metrics),
        "page": str(index),
        "per_iso": [
            {
                k: r[k]
                for k in r
                if k.startswith(("psnr_model", "gain_", "noise_corr")) or k == "iso"
            }
            for r in result["per_iso"]
        ],
    }


def run_components(cfg: dict, model, out: Path) -> dict:
    """A model of more components: photographs with measured depth (``images=depth``: every
    set available, ``motorcycle`` always; or a list of set names)."""
    from residual_train.evaluate import depth_sets
    from residual_train.evaluate.components import evaluate_components
    from residual_train.evaluate.page import write_components_page
    from residual_train.evaluate.run import _Cache, card_isos, write_metrics

    names = cfg["images"]
    if names in ("depth", "builtin"):
        names, missing = depth_sets.available()
        for n, why in missing.items():
            print(f"note: depth set {n} skipped: {why}")
    names = [names] if isinstance(names, str) else list(names)
    shrink = float(cfg["shrink"])
    require(shrink >= 1 and shrink == int(shrink), f"shrink = {shrink}: an integer >= 1 here")
    items = [depth_sets.load(n, shrink_factor=int(shrink)) for n in names]
    if cfg.get("max_images"):
        items = items[: int(cfg["max_images"])]
    if cfg.get("max_size"):
        items = [depth_sets.crop_centre(it, int(cfg["max_size"])) for it in items]
    isos = [float(v) for v in (cfg.get("isos") or card_isos(model.card))]
    for iso in isos:
        model.noise_model(iso)
    result = evaluate_components(
        model,
        items,
        isos,
        cfg.get("component_baselines"),
        int(cfg["seed"]),
        int(cfg["tile"]),
        int(cfg["overlap"]),
        _Cache(Path(cfg["cache"]) if cfg.get("cache") else None),
        cfg.get("bank_cache"),
        int(cfg["min_bin_pixels"]),
        bool(cfg["progress"]),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    metrics = write_metrics(result, out)
    index = write_components_page(result, out)
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
