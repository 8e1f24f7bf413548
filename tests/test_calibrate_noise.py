"""``calibrate noise`` on synthetic raws of the project's own sensors (known A, B, row
noise, Tukey-λ, dark shading), its files, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from data_gen.calibrate.noise import run
from data_gen.calibrate.synthetic import (
    SyntheticSensor,
    capture,
    chart_scene,
    dark_shading,
    vignette,
    write_frames,
)
from data_gen.cfa import pack
from data_gen.core.cli import compose_config
from data_gen.core.errors import InputError
from data_gen.raw import write_dng
from data_gen.sensor import build_sensor
from tests.conftest import CONF, ROOT

SHAPE = (256, 384)


def sensor_of(name: str, iso: float, **extra) -> SyntheticSensor:
    """The project's sensor preset ``name`` at ``iso`` as a synthetic camera."""
    cfg = yaml.safe_load((CONF / "sensor" / f"{name}.yaml").read_text())
    p = build_sensor(cfg).params(iso)
    return SyntheticSensor(p.a.astype(float), p.b.astype(float), p.ob, p.white, iso, **extra)


def calibrate(raws, out: Path, *overrides: str) -> dict:
    cfg = compose_config(CONF, "calibrate_noise", [f"raws={raws}", f"out={out}", *overrides])
    return run(cfg)


def flats(d: Path, sensor: SyntheticSensor, stem: str, darks: int = 2, seed: int = 0) -> None:
    """Two flats at each of four exposures (vignetted), and ``darks`` dark frames."""
    vig = vignette(SHAPE)
    levels = [0.03, 0.1, 0.3, 0.7]
    signals = [lv * vig for lv in levels for _ in range(2)] + [np.zeros(SHAPE)] * darks
    exposures = [lv / 100 for lv in levels for _ in range(2)] + [1e-3] * darks
    write_frames(d, sensor, signals, stem, seed, exposures)


@pytest.fixture(scope="module")
def pt_set(tmp_path_factory):
    """Photon-transfer captures: generic_aps_c at ISO 200 and 3200 (a dir each ISO)."""
    d = tmp_path_factory.mktemp("pt")
    sensors = {iso: sensor_of("generic_aps_c", iso) for iso in (200, 3200)}
    for iso, s in sensors.items():
        flats(d, s, f"flat_iso{iso}", seed=iso)
    return d, sensors


@pytest.mark.parametrize("preset,iso", [("generic_aps_c", None), ("phone_10bit", 800)])
def test_photon_transfer_recovers_a_and_b_within_3_percent(pt_set, tmp_path, preset, iso):
    if iso is None:
        d, sensors = pt_set
    else:
        d, sensors = tmp_path / "raws", {iso: sensor_of(preset, iso)}
        flats(d, sensors[iso], "f", seed=1)
    res = calibrate(d, tmp_path / "out")
    for iso_, s in sensors.items():
        r = res["isos"][f"{iso_:g}"]
        assert r["method"] == "photon_transfer"
        t = s.truth()
        np.testing.assert_allclose(r["A"], t["A"], rtol=0.03)
        np.testing.assert_allclose(r["B"], t["B"], rtol=0.03)
    doc = json.loads((tmp_path / "out" / "noise.json").read_text())
    r = doc["isos"][f"{next(iter(sensors)):g}"]
    # k1/k0: the project's raw model at ISO 100 (design §1)
    g = next(iter(sensors)) / 100
    span = r["white"] - np.asarray(r["black"])
    np.testing.assert_allclose(r["k1"], np.asarray(r["A"]) * span / g)
    np.testing.assert_allclose(r["k0"], np.asarray(r["B"]) * span**2 / g)
    assert r["black_source"] == "dark frames" and min(r["r2"]) > 0.99


def test_outputs_sensor_yaml_page_and_config(pt_set, tmp_path):
    d, sensors = pt_set
    out = tmp_path / "out"
    res = calibrate(d, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "index.html",
        "noise.json",
        "sensor.yaml",
    ]
    sensor = build_sensor(yaml.safe_load((out / "sensor.yaml").read_text()))
    assert sensor.iso.values == [200.0, 3200.0]
    for iso, s in sensors.items():  # R, mean G, B of the truth
        t = s.truth()["A"]
        np.testing.assert_allclose(sensor.params(iso).a, [t[0], (t[1] + t[2]) / 2, t[3]], rtol=0.03)
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<th>R²</th>" in page
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == "auto"
    # the same command again changes nothing; another refuses to overwrite
    again = calibrate(d, out)
    assert again["unchanged"] and again["isos"] == res["isos"]
    with pytest.raises(InputError, match="already holds a different calibration"):
        calibrate(d, out, "method=photon_transfer")
    assert not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize("preset,iso", [("generic_aps_c", 100), ("generic_aps_c", 1600), ("phone_10bit", 400)])  # fmt: skip
def test_single_frame_recovers_a_and_b_within_10_percent(tmp_path, preset, iso):
    s = sensor_of(preset, iso)
    rng = np.random.default_rng(iso)
    write_frames(tmp_path / "raw", s, [chart_scene((768, 1152), rng)], "scene", seed=iso)
    res = calibrate(tmp_path / "raw", tmp_path / "out")
    r = res["isos"][f"{iso:g}"]
    assert r["method"] == "single"
    np.testing.assert_allclose(r["A"], s.truth()["A"], rtol=0.10)
    np.testing.assert_allclose(r["B"], s.truth()["B"], rtol=0.10)


@pytest.fixture(scope="module")
def dark_set(tmp_path_factory):
    """Ten dark frames of generic_aps_c at ISO 1600 with row noise, Tukey-λ read noise,
    a dark shading and hot pixels."""
    d = tmp_path_factory.mktemp("dark")
    rng = np.random.default_rng(5)
    hot = np.stack([rng.integers(0, SHAPE[0], 12), rng.integers(0, SHAPE[1], 12)], 1)
    s = sensor_of(
        "generic_aps_c",
        1600,
        row_sigma=2.5,
        tukey_lambda=-0.15,
        shading=dark_shading(SHAPE, rng, 4.0),
        hot=hot,
    )
    write_frames(d, s, [np.zeros(SHAPE)] * 10, "dark_iso1600", seed=7)
    return d, s


def test_dark_frames_statistics(dark_set, tmp_path):
    d, s = dark_set
    res = calibrate(d, tmp_path / "out")
    r = res["isos"]["1600"]
    assert r["method"] == "dark" and r["A"] is None
    assert "give k1" in res["no_sensor_because"] and res["sensor"] is None
    doc = json.loads((tmp_path / "out" / "dark.json").read_text())["isos"]["1600"]
    t = s.truth()
    np.testing.assert_allclose(doc["read_var_dn2"], t["read_var_dn2"], rtol=0.03)
    np.testing.assert_allclose(r["B"], t["B"], rtol=0.03)
    np.testing.assert_allclose(doc["row_sigma_dn"], s.row_sigma, rtol=0.10)
    lam = [sh["lambda"] for sh in doc["shape"]]
    np.testing.assert_allclose(lam, s.tukey_lambda, rtol=0.10)
    assert {sh["kind"] for sh in doc["shape"]} == {"tukey_lambda"}
    np.testing.assert_allclose(doc["black"], s.black, atol=0.5)  # the shading has mean 0
    shading = np.load(tmp_path / "out" / doc["shading_file"])
    truth = pack(s.shading, s.pattern)
    assert shading.shape == truth.shape and shading.dtype == np.float32
    corr = [np.corrcoef(shading[p].ravel(), truth[p].ravel())[0, 1] for p in range(4)]
    assert min(corr) >= 0.95, corr
    found = {tuple(p) for p in doc["bad_pixels"]["hot"]}
    assert {tuple(p) for p in s.hot.tolist()} <= found


def test_hypothesised_k1_gives_a_from_dark_frames_only(dark_set, tmp_path):
    d, s = dark_set
    res = calibrate(d, tmp_path / "out", "k1=0.63")
    black = json.loads((tmp_path / "out" / "noise.json").read_text())["isos"]["1600"]["black"]
    span = s.white - np.asarray(black)
    np.testing.assert_allclose(res["isos"]["1600"]["A"], 0.63 * 16 / span, rtol=1e-9)
    assert yaml.safe_load((tmp_path / "out" / "sensor.yaml").read_text())["isos"] == [1600]


def test_method_is_chosen_from_the_files_and_checked_when_given(pt_set, dark_set, tmp_path):
    d, _ = pt_set
    with pytest.raises(InputError, match=r"flat_iso200_000.dng is not a dark frame"):
        calibrate(d, tmp_path / "a", "method=dark")
    one = tmp_path / "one"
    one.mkdir()
    for name in ("flat_iso200_001.dng", "flat_iso200_003.dng"):  # two exposures, one each
        (one / name).symlink_to(d / name)
    with pytest.raises(InputError, match=r"two or more frames per exposure level; ISO 200"):
        calibrate(one, tmp_path / "b", "method=photon_transfer")
    assert calibrate(one, tmp_path / "c")["isos"]["200"]["method"] == "single"
    dd, _ = dark_set
    few = sorted(dd.glob("*.dng"))[:4]
    with pytest.raises(
        InputError, match=r"method dark needs 10 dark frames per ISO; ISO 1600 has 4"
    ):
        calibrate("[" + ",".join(map(str, few)) + "]", tmp_path / "e")
    with pytest.raises(InputError, match=r"method single needs a raw of a lit scene"):
        calibrate(dd, tmp_path / "f", "method=single")


def test_bad_captures_are_named_in_one_line(tmp_path):
    s = sensor_of("generic_aps_c", 400)
    rng = np.random.default_rng(0)
    sat = tmp_path / "sat"
    write_frames(sat, s, [np.full(SHAPE, 1.5)] * 2 + [np.full(SHAPE, 0.2)] * 2, "f")
    with pytest.raises(InputError, match=r"f_000.dng: 100 % of the photosites are at the white"):
        calibrate(sat, tmp_path / "o1")
    dim = tmp_path / "dim"
    write_frames(dim, s, [np.full(SHAPE, 0.01)] * 2, "f")
    with pytest.raises(
        InputError, match=r"f_001.dng: the brightest lit frame of ISO 400 reaches 1"
    ):
        calibrate(dim, tmp_path / "o2")
    mixed = tmp_path / "mixed"
    write_frames(mixed, s, [np.full(SHAPE, 0.2)], "a")
    write_dng(
        mixed / "b.dng", capture(s, np.full((128, 128), 0.2), rng), "RGGB", s.black, s.white, 400
    )
    with pytest.raises(InputError, match=r"b.dng: 128x128 photosites, but a_000.dng has 256x384"):
        calibrate(mixed, tmp_path / "o3")
    noiso = tmp_path / "noiso"
    write_frames(noiso, s, [np.full(SHAPE, 0.2)], "a")
    write_dng(noiso / "b.dng", capture(s, np.full(SHAPE, 0.2), rng), "RGGB", s.black, s.white)
    with pytest.raises(InputError, match=r"b.dng carries no ISO while a_000.dng has ISO 400"):
        calibrate(noiso, tmp_path / "o4")
    notraw = tmp_path / "photo.dng"
    notraw.write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not a raw" * 50)
    with pytest.raises(InputError, match=r"photo.dng cannot be read by LibRaw"):
        calibrate(notraw, tmp_path / "o5")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no raws here")
    with pytest.raises(InputError, match=r"the directory holds no raw files"):
        calibrate(empty, tmp_path / "o6")


def test_unknown_iso_is_keyed_unknown_and_iso_override_names_it(tmp_path):
    s = sensor_of("generic_aps_c", 800)
    rng = np.random.default_rng(3)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_dng(
        raw / "scene.dng", capture(s, chart_scene((768, 1152), rng), rng), "RGGB", s.black, s.white
    )
    res = calibrate(raw, tmp_path / "o1")
    assert list(res["isos"]) == ["unknown"] and "carry no ISO" in res["no_sensor_because"]
    res = calibrate(raw, tmp_path / "o2", "iso=800")
    assert list(res["isos"]) == ["800"] and res["sensor"]


def test_command_line_error_is_one_line_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "residual_train.cli", "calibrate", "noise",
         f"raws={tmp_path}/none", f"out={tmp_path}/o"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no such file or directory" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "residual_train.cli", "calibrate", "optics"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "use noise or lens" in r.stderr
