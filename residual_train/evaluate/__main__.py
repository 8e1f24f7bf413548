"""``python -m residual_train.evaluate model=REF images=DIR|builtin out=DIR [isos=[...]]
[registry=DIR]``: quality on real photographs against classical pipelines."""

from __future__ import annotations

from pathlib import Path

import yaml

from data_gen.cli import run_app
from data_gen.errors import require
from data_gen.paths import APPS


def run(cfg: dict) -> dict:
    from residual_train.evaluate import evaluate, load_images, write_metrics, write_page

    require(
        cfg.get("out") not in (None, "???"), "out is missing: give the output folder as out=DIR"
    )
    out = Path(cfg["out"])
    require(
        not (out.exists() and any(out.iterdir())),
        f"out = {str(out)!r} already holds files; nothing is overwritten",
    )
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
                for r in s["per_iso"]
            ]
            for name, s in result["per_set"].items()
        },
    }


def main() -> None:
    run_app(APPS, "evaluate", run)


if __name__ == "__main__":
    main()
