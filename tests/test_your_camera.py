"""docs/your-camera.md's one-page block, run as it stands (tiny sizes replace the sizes it
names) on a team's raws made here: synthetic dark frames and flat fields of a camera with
row noise, long-tailed read noise, a dark shading and hot pixels, and a capture of a
slanted checkerboard through a known lens. Calibrate noise → calibrate lens → generate with
the calibrated sensor and lens and ``sensor.noise=physical`` → train → export → evaluate →
publish → deploy: so the guide cannot drift from the code."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from data_gen.calibrate.synthetic import (
    SyntheticSensor,
    chart_capture,
    chart_homography,
    dark_shading,
    vignette,
    write_frames,
)
from data_gen.sensor import build_sensor
from tests.conftest import CONF, ROOT

GUIDE = ROOT / "docs" / "your-camera.md"
MARK = "<!-- tests/test_your_camera.py runs this block"

# what replaces the guide's sizes (key=value by key; a key the command lacks is added)
TINY = {
    ("calibrate", "lens"): ["grid=[2,3]", "psf_size=15", "psf_window=96"],
    ("generate",): [
        "shards=2",
        "samples_per_shard=8",
        "patch_size=32",
        "patches_per_source=8",
        "batch_size=8",
        "source.size=96",
        "progress=false",
    ],
    ("train",): ["experiment=tiny", "trainer.max_epochs=1", "data.num_workers=0"],
    ("evaluate",): ["max_images=1", "max_size=96", "baselines=[]", "workers=1", "progress=false"],
}


def guide_commands() -> list[list[str]]:
    """The guide's one-page block: each command's words (continuations joined, comments
    dropped)."""
    text = GUIDE.read_text()
    assert MARK in text, f"{GUIDE} lost its tested block"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARK) :], re.S).group(1)
    block = block.replace("\\\n", " ")
    lines = [ln.split(" #")[0].strip() for ln in block.splitlines()]
    return [shlex.split(ln) for ln in lines if ln and not ln.startswith("#")]


def tiny(words: list[str]) -> list[str]:
    """``words`` with the tiny sizes of its stage in place of the guide's."""
    assert words[0] == "residual-train", words
    rest = words[1:]
    extra = next((v for k, v in TINY.items() if tuple(rest[: len(k)]) == k), [])
    keys = {e.split("=")[0] for e in extra}
    kept = [w for w in rest if w.split("=")[0] not in keys]
    return [sys.executable, "-m", "residual_train.cli", *kept, *extra]


def team_captures(root: Path) -> None:
    """``captures/noise``: at ISO 1600, ten dark frames and two flat fields at each of four
    exposures of a camera with row noise, Tukey-λ read noise, a dark shading and hot
    pixels; ``captures/chart``: a slanted checkerboard through a Gaussian lens."""
    shape = (256, 384)
    cfg = yaml.safe_load((CONF / "sensor" / "generic_aps_c.yaml").read_text())
    p = build_sensor(cfg).params(1600)
    rng = np.random.default_rng(3)
    hot = np.stack([rng.integers(0, shape[0], 8), rng.integers(0, shape[1], 8)], 1)
    cam = SyntheticSensor(p.a.astype(float), p.b.astype(float), p.ob, p.white, 1600,
                          row_sigma=3.0, tukey_lambda=-0.15,
                          shading=dark_shading(shape, rng, 4.0), hot=hot)  # fmt: skip
    vig = vignette(shape)
    levels = [0.03, 0.1, 0.3, 0.7]
    signals = [lv * vig for lv in levels for _ in range(2)] + [np.zeros(shape)] * 10
    exposures = [lv / 100 for lv in levels for _ in range(2)] + [1e-3] * 10
    write_frames(root / "captures" / "noise", cam, signals, "iso1600", 1, exposures)
    yy, xx = np.mgrid[-7:8, -7:8]

    def psf_at(fy: float, fx: float) -> np.ndarray:
        s = 1.0 + 0.5 * fx
        k = np.exp(-(yy**2 + xx**2) / (2 * s**2))
        return np.repeat((k / k.sum())[None], 3, 0)

    shape = (600, 900)
    img, _ = chart_capture(psf_at, shape, (2, 3), chart_homography(shape, 44.0), (-0.02, 0.0),
                           noise=0.01, seed=2)  # fmt: skip
    (root / "captures" / "chart").mkdir(parents=True)
    tifffile.imwrite(root / "captures" / "chart" / "chart.tif", np.moveaxis(img, 0, -1),
                     photometric="rgb")  # fmt: skip
    photo = np.clip(np.random.default_rng(4).uniform(0.05, 0.6, (96, 96, 3)), 0, 1)
    tifffile.imwrite(root / "photo.tif", photo.astype(np.float32), photometric="rgb")


@pytest.mark.slow
def test_the_guide_runs_from_raws_to_a_published_model(tmp_path):
    team_captures(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESIDUAL_TRAIN_CACHE": str(tmp_path / "cache")}
    commands = guide_commands()
    stages = [" ".join(c[1:3]) for c in commands]
    assert [s.split()[0] for s in stages] == [
        "calibrate", "calibrate", "generate", "train", "export", "evaluate", "publish", "deploy",
    ]  # fmt: skip
    for words in commands:
        r = subprocess.run(tiny(words), cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=900)  # fmt: skip
        assert r.returncode == 0, (words[:3], r.stderr[-3000:])
    # what each step wrote, and what the next one took from it
    sensor = yaml.safe_load((tmp_path / "calib/noise/sensor.yaml").read_text())
    assert sensor["kind"] == "table" and sensor["dark"] == "dark.json"
    dark = json.loads((tmp_path / "calib/noise/dark.json").read_text())["isos"]["1600"]
    assert dark["row_sigma_dn"][0] == pytest.approx(3.0, rel=0.15)
    assert (tmp_path / "calib/lens/lens.yaml").is_file()
    data = yaml.safe_load((tmp_path / "data/mycam/config.yaml").read_text())
    assert data["sensor"]["noise"] == "physical" and data["lens"]["kind"] == "grid"
    assert data["sensor"]["dark"] == str(tmp_path / "calib/noise/dark.json")
    card = json.loads((tmp_path / "exports/mycam/card.json").read_text())
    assert card["noise_model"]["source"]["noise"] == "physical"
    metrics = json.loads((tmp_path / "eval/mycam/metrics.json").read_text())
    row = metrics["per_iso"][0]
    assert row["iso"] == 1600 and np.isfinite(row["psnr_model"]) and np.isfinite(row["psnr_input"])
    assert (tmp_path / "models").is_dir() and any((tmp_path / "out/photo").iterdir())
