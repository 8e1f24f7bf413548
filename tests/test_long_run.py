"""The long run's recipe (experiment=long) and its tools: it trains on the training split
only, validates on the held-out photographs, and its learning curve and publication gate
read what the run and evaluate wrote."""

from __future__ import annotations

import importlib.util
import json

import pytest
from hydra.utils import instantiate

from data_gen.generate import generate
from data_gen.splits import BSD400_VAL
from residual_train.data import ResidualDataModule
from tests.conftest import ROOT, compose_cfg, shared
from tests.helpers.training import train_cfg


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_long_run_trains_on_the_training_split_and_validates_on_the_held_out_one(tmp_path):
    shared("bsds400")
    val = tmp_path / "val"
    generate(
        compose_cfg(
            "dataset=shipped_v2_val",
            f"out_dir={val}",
            "shards=1",
            "samples_per_shard=4",
            "patches_per_source=2",
            "progress=false",
            tiny=False,
        )
    )
    cfg = train_cfg("experiment=long", f"data.dir={val}")
    assert cfg["ckpt_path"] == "auto" and cfg["callbacks"]["early_stop"]["monitor"] == (
        "val/psnr_full"
    )
    dm = instantiate(cfg["data"], _convert_="all")
    assert isinstance(dm, ResidualDataModule)
    sources = dm.dataset(train=False)._file(0)["meta"]["source"]
    names = {(s.decode() if isinstance(s, bytes) else s).split("/")[-1] for s in sources}
    photos = {s for s in names if s.endswith(".jpg")}
    assert photos and photos <= set(BSD400_VAL)
    mix = dm._pipeline.source
    trained = {f.name for f in dict(zip(mix.names, mix.sources, strict=True))["photos"].files}
    assert len(trained) == 360 and not trained & set(BSD400_VAL)


def test_the_learning_curve_has_one_row_per_validation_and_marks_the_best(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.csv").write_text(
        "epoch,lr,step,train/loss,val/psnr_full,val/psnr_full/iso0-200\n"
        "0,1e-4,49,0.5,,\n0,2e-4,99,0.3,,\n0,,99,,30.5,33.0\n"
        "1,2e-4,149,0.2,,\n1,,199,,31.0,34.0\n2,,299,,30.9,33.9\n"
    )
    lc = script("learning_curve")
    rows = lc.learning_curve(tmp_path)
    assert [r["step"] for r in rows] == [100, 200, 300]
    assert [r["best"] for r in rows] == [0, 1, 0]
    assert rows[0]["train_loss"] == pytest.approx(0.4) and rows[1]["train_loss"] == 0.2
    assert rows[1]["val/psnr_full/iso0-200"] == 34.0
    path = lc.write(tmp_path)
    assert path.read_text().splitlines()[0].startswith("step,epoch,lr,train_loss,val/psnr_full")


def test_the_publication_gate_wants_a_win_beyond_the_noise_at_every_iso_on_the_same_photos():
    cmp = script("compare_validation")

    def metrics(psnrs: dict) -> dict:
        rows = [
            {"image": f"bsd400_val/{i}", "iso": iso, "psnr_model": p}
            for iso, ps in psnrs.items()
            for i, p in enumerate(ps)
        ]
        return {"isos": list(psnrs), "seed": 0, "per_image": rows}

    cur = metrics({100.0: [40, 41, 42, 43], 6400.0: [30, 31, 32, 33]})
    # ahead at both ISOs by far more than the spread of the per-image gains
    wins, lines = cmp.compare(
        metrics({100.0: [40.5, 41.4, 42.5, 43.6], 6400.0: [30.2, 31.3, 32.1, 33.2]}), cur
    )
    assert wins and "ahead on 100 % of 4 images (worst +0.100)" in lines[1]
    # behind at one ISO
    assert not cmp.compare(
        metrics({100.0: [40.5, 41.4, 42.5, 43.6], 6400.0: [29.9, 31, 32, 33]}), cur
    )[0]
    # ahead on average at ISO 6400, but within the noise: +0.05 ± 0.12 dB
    noisy = metrics({100.0: [40.5, 41.4, 42.5, 43.6], 6400.0: [30.3, 30.8, 32.2, 32.9]})
    wins, lines = cmp.compare(noisy, cur)
    assert not wins and "+0.050 dB (± 0.119 standard error, +0.4 of them)" in lines[1]
    assert cmp.compare(noisy, cur, z=0.0)[0]  # the bare "higher mean" rule would publish it
    # every image moved alike (no spread): the sign decides, and one image is enough for z = 0
    same = cmp.compare(metrics({100.0: [39, 40, 41, 42], 6400.0: [29, 30, 31, 32]}), cur)
    assert not same[0] and "-1.000 dB (± 0.000 standard error, -inf of them)" in same[1][0]
    one = metrics({100.0: [40], 6400.0: [30]})
    assert cmp.compare(metrics({100.0: [41], 6400.0: [31]}), one, z=0.0)[0]
    assert not cmp.compare(metrics({100.0: [41], 6400.0: [31]}), one)[0]
    with pytest.raises(ValueError, match="same images"):
        cmp.compare(metrics({100.0: [40], 6400.0: [30]}), cur)
    other = json.loads(json.dumps(cur))
    other["seed"] = 1
    with pytest.raises(ValueError, match="seed differ"):
        cmp.compare(other, cur)
