"""``python -m residual_train.demo [out=runs/demo] [profile=full|tiny]``: the main job.

On the embedded defaults (dead leaves, the ``soft_prime`` lens, the ``generic_aps_c``
sensor, ISO 100-6400) it

1. generates a dataset (several shards, in parallel);
2. trains a dual-head U-Net (a GPU is used when present);
3. exports it (ONNX parity-checked) and publishes it to ``OUT/registry``;
4. applies it to held-out rendered images (dead leaves, and Kodak24 when
   ``../shared/data`` exists) and composes them at several strengths, next to a
   classical baseline (Wiener deconvolution with the true PSF, then wavelet denoising);
5. writes ``OUT/report/index.html`` (with its PNGs) and prints its path.

Re-running reuses what is complete (shards, the finished training run).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_gen.cli import parse_kv
from data_gen.errors import InputError

CONF = Path(__file__).resolve().parents[1] / "conf"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

PROFILES = {
    # about 7 minutes on 2 CPU cores (see the report's timings)
    "full": {
        "data": ["shards=8", "samples_per_shard=512", "patch_size=64", "workers=2"],
        "train": ["experiment=demo"],
        "eval_size": 256,
        "eval_frames": 4,
        "isos": [100, 400, 1600, 6400],
        "kodak": 4,
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
        "eval_size": 64,
        "eval_frames": 1,
        "isos": [400, 6400],
        "kodak": 1,
    },
}


@dataclass
class Timer:
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        print(f"[demo] {name} ...", flush=True)
        t = time.perf_counter()
        yield
        self.stages[name] = time.perf_counter() - t
        print(f"[demo] {name}: {self.stages[name]:.1f} s", flush=True)


def compose_config(name: str, overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return OmegaConf.to_container(compose(name, overrides=overrides), resolve=True)


def held_out_images(data_cfg: dict, profile: dict) -> list[tuple[str, np.ndarray]]:
    """Originals the model never saw: dead leaves of another seed; Kodak24 if present."""
    from data_gen.sources import FolderSource, dead_leaves

    size = profile["eval_size"]
    rng = np.random.default_rng(2**31 + 7)  # no shard seed reaches this stream
    src = data_cfg["source"]
    out = []
    for i in range(profile["eval_frames"]):
        img = dead_leaves(rng, size, data_cfg["channels"], int(src.get("supersample", 2)))
        out.append((f"dead_leaves_{i}", img * np.float32(0.7)))
    kodak = SHARED_DATA / "kodak24"
    if kodak.is_dir() and profile["kodak"]:
        fs = FolderSource(str(kodak), linearize=True, shrink_factor=2)
        for f in fs.files[: profile["kodak"]]:
            img = fs.load(f).pixels
            h, w = img.shape[1:]
            s = min(size, h, w)
            y0, x0 = (h - s) // 2, (w - s) // 2
            out.append((f.stem, np.ascontiguousarray(img[:, y0 : y0 + s, x0 : x0 + s])))
    return out


def render_eval(frame: np.ndarray, pipe, iso: float, seed: int) -> dict[str, np.ndarray]:
    """The generator's physics on a whole (square) frame: clean, blur, noise, noise_blur."""
    from data_gen.render import BlurOperator, SampleSpec, render_batch
    from data_gen.sources import Frame

    k = pipe.bank.size
    p = frame.shape[-1] - k + 1
    spec = SampleSpec(
        frame=Frame("eval", frame),
        y=k // 2,
        x=k // 2,
        exposure=1.0,
        noise=pipe.sensor.params(iso),
        psf_index=0,
        image_height=0.0,
        azimuth=0.0,
        seed=seed,
        rng=np.random.default_rng(seed),
    )
    out = render_batch([spec], BlurOperator(pipe.bank, p))
    return {key: v[0] for key, v in out.items()}


def run_demo(out: Path, profile_name: str = "full") -> Path:
    from data_gen.generate import build_pipeline, generate
    from residual_train.deploy import load_model
    from residual_train.export import export
    from residual_train.publish import Registry
    from residual_train.train import train

    if profile_name not in PROFILES:
        raise InputError(f"profile = {profile_name!r}: use one of {sorted(PROFILES)}")
    prof = PROFILES[profile_name]
    out = out.resolve()
    timer = Timer()
    data_dir, run_dir = out / "data", out / "train"

    with timer.stage("generate data"):
        data_cfg = compose_config("data_gen", [f"out_dir={data_dir}", *prof["data"]])
        gen = generate(data_cfg)
    with timer.stage("train"):
        train_cfg = compose_config(
            "train", [f"data.dir={data_dir}", f"run_dir={run_dir}", *prof["train"]]
        )
        if (run_dir / "result.json").is_file():
            result = json.loads((run_dir / "result.json").read_text())
            print("[demo] reusing the finished training run", flush=True)
        else:
            if (run_dir / "checkpoints" / "last.ckpt").is_file():
                train_cfg["ckpt_path"] = "last"  # an interrupted demo resumes
            result = train(train_cfg)
    with timer.stage("export + publish"):
        from data_gen.shards import sha256_file

        ckpt = Path(result["best"] or run_dir / "checkpoints" / "last.ckpt")
        version = sha256_file(ckpt)[:10]
        exp_dir = out / f"export-{version}"
        if not (exp_dir / "card.json").is_file():
            export(ckpt, exp_dir)
        reg = Registry(out / "registry")
        if version not in reg.index("demo")["versions"]:
            reg.publish(exp_dir, "demo", version)
        model = load_model("demo:latest", registry=out / "registry")
    with timer.stage("evaluate"):
        from residual_train.report import evaluate

        pipe = build_pipeline(data_cfg)
        images = held_out_images(data_cfg, prof)
        evaluation = evaluate(model, pipe, images, prof["isos"], render_eval)
    with timer.stage("report"):
        from residual_train.report import write_report

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
        index = write_report(
            out / "report", info, data_cfg, train_cfg, run_dir, model, pipe, evaluation
        )
    summary = json.loads((out / "report" / "report.json").read_text())
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


def main(argv: list[str] | None = None) -> int:
    try:
        _, o = parse_kv(
            sys.argv[1:] if argv is None else argv,
            {"out": "runs/demo", "profile": "full"},
            doc=__doc__,
            usage="python -m residual_train.demo [out=DIR] [profile=full|tiny]",
        )
        run_demo(Path(o["out"]), o["profile"])
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
