"""Raw files the calibration writes and reads (DNG, ISO), the calibrated sensor kind, and
``GROUP=FILE.yaml`` on the command line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from data_gen.cfa import PATTERNS, pack
from data_gen.core.cli import group_files
from data_gen.core.errors import InputError
from data_gen.raw import raw_iso, read_raw, write_dng
from data_gen.sensor import RawNoiseModel, build_sensor
from tests.conftest import CONF, ROOT


@pytest.mark.parametrize("pattern", PATTERNS)
def test_written_dng_reads_back_exactly(tmp_path, pattern):
    rng = np.random.default_rng(0)
    m = rng.integers(0, 4096, (32, 48)).astype(np.uint16)
    p = write_dng(tmp_path / "x.dng", m, pattern, [500, 510, 520, 530], 4095, iso=800)
    r = read_raw(p)
    assert r.pattern == pattern and r.white == 4095 and r.iso == 800
    np.testing.assert_array_equal(r.mosaic, m)
    # black per packed plane R, Gr, Gb, B whatever the CFA
    assert r.black.tolist() == [500, 510, 520, 530]
    assert pack(r.mosaic, pattern).shape == (4, 16, 24)


def test_iso_from_the_file_name_when_the_file_has_none(tmp_path):
    m = np.zeros((32, 32), np.uint16)  # LibRaw refuses frames below ~22 px
    assert read_raw(write_dng(tmp_path / "flat_iso3200_01.dng", m, "RGGB", 0, 1023)).iso == 3200
    assert read_raw(write_dng(tmp_path / "ISO-125.dng", m, "RGGB", 0, 1023)).iso == 125
    assert read_raw(write_dng(tmp_path / "frame.dng", m, "RGGB", 0, 1023)).iso is None
    # the tag wins over the name
    assert raw_iso(write_dng(tmp_path / "a_iso100.dng", m, "RGGB", 0, 1023, iso=400)) == 400


def test_table_sensor_interpolates_in_iso_and_maps_four_planes_to_rgb():
    cfg = {
        "kind": "table",
        "isos": [100, 400],
        "a": [[1e-4, 2e-4, 4e-4, 3e-4], [4e-4, 8e-4, 8e-4, 1.2e-3]],
        "b": [[1e-7] * 4, [4e-7] * 4],
        "ob": 512,
        "white": 16383,
    }
    s = build_sensor(cfg)
    p = s.params(200)
    # linear in ISO between the rows; G = mean of Gr and Gb
    np.testing.assert_allclose(p.a, [2e-4, 3e-4 + 5e-4 / 3, 6e-4], rtol=1e-6)
    np.testing.assert_allclose(p.b, [2e-7] * 3, rtol=1e-6)
    assert s.iso.values == [100.0, 400.0]  # default: the calibrated ISOs
    # k0/k1 express the same variance in DN (design §1)
    span = 16383 - 512
    np.testing.assert_allclose(p.k1 * 2 / span, p.a, rtol=1e-5)
    with pytest.raises(InputError, match=r"sensor.iso spans 50..400 but the calibration covers"):
        build_sensor({**cfg, "iso": [50, 400]})
    with pytest.raises(InputError, match=r"one row per ISO"):
        build_sensor({**cfg, "a": cfg["a"][:1]})
    with pytest.raises(InputError, match=r"sensor.b = .* must be finite and >= 0"):
        build_sensor({**cfg, "b": [[-1e-7] * 4, [4e-7] * 4]})


def test_table_agrees_with_the_raw_model_it_was_made_from():
    raw = RawNoiseModel(9.0, 0.63, 512, 16383, [100, 1600])
    rows = [raw.params(i) for i in (100, 1600)]
    table = build_sensor(
        {
            "kind": "table",
            "isos": [100, 1600],
            "a": [r.a.tolist() for r in rows],
            "b": [r.b.tolist() for r in rows],
            "ob": 512,
            "white": 16383,
        }
    )
    for iso in (100, 700, 1600):  # the raw model is linear in ISO too
        np.testing.assert_allclose(table.params(iso).a, raw.params(iso).a, rtol=1e-5)
        np.testing.assert_allclose(table.params(iso).b, raw.params(iso).b, rtol=1e-5)


def test_group_file_becomes_an_option_with_paths_made_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_TRAIN_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "calib"
    d.mkdir()
    (d / "lens.yaml").write_text("kind: grid\npath: psf_grid.npy\nsensor_mm: [1, 2]\n")
    out = group_files(["lens=" + str(d / "lens.yaml"), "shards=2"], CONF)
    assert out[1] == "shards=2" and out[0].startswith("lens=file_")
    root = out[-1].removeprefix("hydra.searchpath=[file://").removesuffix("]")
    copied = yaml.safe_load(next((tmp_path / "cache").rglob("file_*.yaml")).read_text())
    assert copied["path"] == str(d / "psf_grid.npy")
    assert str(tmp_path / "cache") in root
    # an option name, a non-group key and a missing file
    assert group_files(["lens=soft_zoom", "out_dir=x.yaml"], CONF) == [
        "lens=soft_zoom",
        "out_dir=x.yaml",
    ]
    with pytest.raises(InputError, match=r"sensor = 'nope.yaml': no such file"):
        group_files(["sensor=nope.yaml"], CONF)


def test_generator_takes_a_sensor_file_on_the_command_line(tmp_path):
    sensor = tmp_path / "sensor.yaml"
    sensor.write_text(
        yaml.safe_dump(
            {
                "kind": "table",
                "isos": [200, 800],
                "a": [[2e-4] * 4, [8e-4] * 4],
                "b": [[1e-6] * 4, [4e-6] * 4],
                "ob": 64,
                "white": 1023,
                "iso": [800],
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESIDUAL_TRAIN_CACHE": str(tmp_path / "c")}
    args = [
        "shards=1",
        "samples_per_shard=4",
        "patch_size=16",
        "patches_per_source=4",
        "batch_size=4",
        "source.size=64",
        "lens.size=7",
        "progress=false",
    ]
    r = subprocess.run(
        [sys.executable, "-m", "data_gen", f"out_dir={tmp_path / 'd'}", f"sensor={sensor}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    import h5py

    saved = yaml.safe_load((tmp_path / "d" / "config.yaml").read_text())
    assert saved["sensor"]["kind"] == "table" and saved["sensor"]["iso"] == [800]
    with h5py.File(next((tmp_path / "d").glob("shard-*.h5"))) as f:
        meta = f["meta"][:]
    assert set(meta["iso"].tolist()) == {800.0}
    # k1 in DN at ISO 100: A·span/g = 8e-4·959/8
    np.testing.assert_allclose(meta["k1"], 8e-4 * 959 / 8, rtol=1e-5)
