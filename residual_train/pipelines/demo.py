"""``python -m residual_train.pipelines.demo [out=runs/demo] [profile=full|tiny]``: the main job
(``profile=components``: relight + fog + blur + noise, :mod:`.components_demo`).

On the embedded defaults (dead leaves, the ``soft_prime`` lens, the ``generic_aps_c``
sensor, ISO 100-6400) it

1. generates a dataset (several shards, in parallel);
2. trains a quick dual-head U-Net (a GPU is used when present);
3. exports it (ONNX parity-checked) and publishes it to ``OUT/registry``;
4. evaluates it, and the shipped ``default`` model, on real photographs it never saw
   (scikit-image's bundled ones) rendered through the same lens and sensor, next to two
   classical pipelines (``wiener_wavelet``, and ``bm3d_wiener`` when ``bm3d`` is installed);
5. writes ``OUT/report/index.html`` (with its PNGs) and prints its path.

Re-running reuses what is complete (shards, the finished training run).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from data_gen.core.cli import compose_config, run_app
from data_gen.core.errors import InputError
from data_gen.core.paths import APPS, CONF
from data_gen.shards import read_mapping
from residual_train.pipelines.steps import Timer, train_and_publish

PROFILES = {
    # about 7 minutes on 2 CPU cores (see the report's timings)
    "full": {
        "data": ["shards=8", "samples_per_shard=512", "patch_size=64", "workers=2"],
        "train": ["experiment=demo"],
        "eval": {"max_images": None, "max_size": None},
        "min_pixels": 5000,
        "isos": [100, 400, 1600, 6400],
    },
    # seconds: for tests
    "tiny": {
        "data": [
            "shards=3",
            "samples_per_shard=16",
            "patch_size=32",
            "source.size=96",
            "lens.size=15",
            "workers=1",
        ],
        "train": ["experiment=tiny", "data.crop=32", "trainer.max_epochs=1"],
        "eval": {"max_images": 1, "max_size": 64},
        "min_pixels": 500,
        "isos": [400, 6400],
    },
}


def demo_baselines() -> list[str]:
    """Both classical pipelines when ``bm3d`` is installed, else the Wiener one (said once)."""
    import importlib.util

    if importlib.util.find_spec("bm3d") is not None:
        return ["wiener_wavelet", "bm3d_wiener"]
    print("[demo] bm3d is not installed (pip install bm3d): bm3d_wiener left out", flush=True)
    return ["wiener_wavelet"]


def run_demo(out: Path, profile_name: str = "full") -> Path:
    from data_gen.generate import build_pipeline, generate
    from residual_train.pipelines.components_demo import PROFILES as COMPONENT_PROFILES
    from residual_train.pipelines.components_demo import run_components_demo

    known = sorted([*PROFILES, *COMPONENT_PROFILES])
    if profile_name not in known:
        raise InputError(f"profile = {profile_name!r}: use one of {known}")
    if profile_name in COMPONENT_PROFILES:
        return run_components_demo(out, profile_name, Timer())
    prof = PROFILES[profile_name]
    out = out.resolve()
    timer = Timer()
    data_dir, run_dir = out / "data", out / "train"

    with timer.stage("generate data"):
        data_cfg = compose_config(CONF, "data_gen", [f"out_dir={data_dir}", *prof["data"]])
        gen = generate(data_cfg)
    train_cfg, result, version = train_and_publish(
        timer, out, data_dir, run_dir, prof["train"], "demo"
    )
    with timer.stage("evaluate"):
        from residual_train.deploy import shipped_models
        from residual_train.evaluate import evaluate, load_images
        from residual_train.evaluate.run import default_cache

        images = load_images("builtin", 2.0, True, **prof["eval"])
        kw = dict(
            isos=prof["isos"],
            baselines=demo_baselines(),
            workers=2,
            min_pixels=prof["min_pixels"],
            progress=False,
            cache=default_cache(),  # the baselines do not depend on the model: reruns reuse them
        )
        evaluations = {
            "quick model (this run)": evaluate(
                "demo:latest", images, registry=str(out / "registry"), **kw
            )
        }
        if "default" in shipped_models():
            evaluations["shipped default model"] = evaluate("default", images, **kw)
        else:
            print("[demo] no shipped default model in this installation", flush=True)
    with timer.stage("report"):
        from residual_train.pipelines.report import write_report

        info = {
            "timings_s": timer.stages,
            "generator": gen,
            "training": result,
            "profile": profile_name,
            "published": f"{out / 'registry'} demo:{version}",
            "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": _versions(),
            "hardware": _hardware(),
        }
        psf = build_pipeline(data_cfg).bank.psfs[0]
        index = write_report(out / "report", info, data_cfg, train_cfg, run_dir, evaluations, psf)
    summary = read_mapping(out / "report" / "report.json", "report summary")
    summary["info"]["timings_s"] = timer.stages  # now including the report stage
    (out / "report" / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"[demo] report: {index}", flush=True)
    return index


def _versions() -> dict:
    import h5py
    import onnxruntime
    import pytorch_lightning
    import scipy
    import torch

    from data_gen import __version__

    return {
        "residual-train": __version__,
        "torch": torch.__version__,
        "pytorch-lightning": pytorch_lightning.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "h5py": h5py.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _hardware() -> dict:
    import os

    import torch

    hw = {"cpus": os.cpu_count(), "gpu": None}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                hw["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return hw


def main() -> None:
    run_app(APPS, "demo", lambda c: str(run_demo(Path(str(c["out"])), str(c["profile"]))))


if __name__ == "__main__":
    main()
