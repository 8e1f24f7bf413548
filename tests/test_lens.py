"""Lens descriptions, PSF banks (model and measured grid), OLPF, atlas — by properties."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from data_gen.core.errors import InputError
from data_gen.generate import generate
from data_gen.optics import (
    FieldBank,
    apply_sensor_mtf,
    build_bank,
    interpolate_grid,
    load_bank,
    load_psf_grid,
    model_bank,
    parse_lens,
    sensor_psf,
)
from tests.conftest import CONF, ROOT, compose_cfg, shared
from tests.helpers.scenes import radial_first_minimum

GRID = ("psf", "lens_63762BB", "psf_matrix_after_shift_9x12x25x25x3.npy")


def preset(name: str) -> dict:
    return yaml.safe_load((CONF / "lens" / f"{name}.yaml").read_text())


def lens(**kw) -> dict:
    """A small lens description; keywords replace its keys."""
    d = {
        "kind": "model",
        "name": "test",
        "pixel_pitch_um": 1.0,
        "sensor_mm": [3.0, 4.0],
        "wavelengths_nm": [610, 540, 465],
        "size": 31,
        "reference_f_number": 4.0,
        "aberrations_um": {},
        "states": [{"focal_length_mm": 20, "f_number": 4.0, "focus_m": float("inf")}],
        "heights": 3,
        "azimuths": 8,
        "olpf_separation_um": None,
        "fill_factor": 1.0,
    }
    d.update(kw)
    return d


def bank_of(d: dict) -> FieldBank:
    return model_bank(parse_lens(d, len(d["wavelengths_nm"])), d)


def spread(psf: np.ndarray) -> float:
    k = psf.shape[-1]
    y, x = np.mgrid[:k, :k] - k // 2
    return float(np.sqrt((psf * (x**2 + y**2)).sum()))


def test_diffraction_limited_bank_psf_is_airy_and_widens_with_wavelength():
    pitch, n = 0.5, 8.0
    d = lens(pixel_pitch_um=pitch, size=61, heights=1, azimuths=1)
    d["states"] = [{"focal_length_mm": 50, "f_number": n}]
    b = bank_of(d)
    assert b.grid.shape == (1, 1, 1, 3, 61, 61)
    for c, wl in enumerate(d["wavelengths_nm"]):
        r = radial_first_minimum(b.grid[0, 0, 0, c].astype(np.float64), pitch)
        assert abs(r - 1.22 * wl * 1e-3 * n) <= pitch, (wl, r)
    s = [spread(b.grid[0, 0, 0, c]) for c in range(3)]
    assert s[0] > s[1] > s[2]  # 610 > 540 > 465 nm


@pytest.mark.slow
def test_on_axis_psf_of_a_symmetric_lens_is_rotationally_symmetric():
    b = build_bank(preset("sharp_prime"), 3)
    on_axis = b.grid[:, 0]  # (states, azimuths, C, K, K) at h = 0
    for psf in on_axis.reshape(-1, *on_axis.shape[-2:]):
        np.testing.assert_allclose(np.rot90(psf), psf, atol=2e-6)
        np.testing.assert_allclose(psf.T, psf, atol=2e-6)
    # every azimuth at h = 0 is the same point
    assert (on_axis == on_axis[:, :1]).all()
    # off axis the symmetry is broken (coma, astigmatism)
    edge = b.grid[0, -1, 0, 1]
    assert np.abs(np.flip(edge, axis=1) - edge).max() > 1e-3


def test_off_axis_coma_points_along_the_radius_and_turns_with_azimuth():
    d = lens(aberrations_um={"coma": 0.25}, heights=2, azimuths=8)
    b = bank_of(d)
    k = b.size
    yy, xx = np.mgrid[:k, :k] - k // 2
    dots = []
    for j, az in enumerate(b.axis2):
        psf = b.grid[0, 1, j, 1].astype(np.float64)
        peak = np.unravel_index(psf.argmax(), psf.shape)
        v = np.array([(psf * xx).sum() - (peak[1] - k // 2), (psf * yy).sum() - (peak[0] - k // 2)])
        radial = np.array([math.cos(az), math.sin(az)])
        assert np.linalg.norm(v) > 0.3  # the flare is offset from the core
        cross = abs(v[0] * radial[1] - v[1] * radial[0]) / np.linalg.norm(v)
        assert cross < 0.1, (az, v)
        dots.append(float(v @ radial))
    assert all(x > 0 for x in dots) or all(x < 0 for x in dots)  # same side of the core
    # on the axis there is no coma
    centre = b.grid[0, 0, 0, 1]
    np.testing.assert_allclose(np.rot90(centre, 2), centre, atol=2e-6)


def test_bank_lookup_follows_the_patch_position_in_the_frame():
    b = bank_of(lens(aberrations_um={"coma": 0.1}, heights=5, azimuths=8))
    rng = np.random.default_rng(0)
    assert b.cell(0.5, 0.5) == (0, 0)
    # right edge, vertical centre: azimuth 0, image height = half width / half diagonal
    h, az = b.locate(0.5, 1.0, (100, 100))
    assert az == 0 and h == pytest.approx(4 / 5)  # sensor 3 x 4 mm: 2 / 2.5
    assert b.cell(0.5, 1.0) == (3, 0)
    assert b.cell(1.0, 0.5)[1] == 2  # bottom: azimuth +90° (y down)
    assert b.cell(0.0, 0.0) == (4, 5)  # top-left corner: h = 1, azimuth -135°
    i = b.index_for(0.0, 0.0, rng)
    np.testing.assert_array_equal(b.psfs[i], b.grid[0, 4, 5])


def test_olpf_mtf_first_zero_at_one_over_twice_the_separation():
    pitch, s = 0.05, 3.0  # µm per fine sample, spot separation µm
    m = 801
    y, x = (np.mgrid[:m, :m] - m // 2) * pitch
    g = np.exp(-(x**2 + y**2) / (2 * 0.3**2))
    out = apply_sensor_mtf(g, pitch, s, 0.0)
    # in space: four spots at (±s/2, ±s/2)
    q = (m // 2) + round(s / 2 / pitch)
    p = (m // 2) - round(s / 2 / pitch)
    for yy, xx in ((q, q), (q, p), (p, q), (p, p)):
        assert out[yy, xx] == pytest.approx(out.max(), rel=1e-3)
    # in frequency: MTF of the line spread function, relative to the input's
    freqs = np.linspace(0.02, 0.3, 561)
    xs = (np.arange(m) - m // 2) * pitch
    basis = np.exp(-2j * np.pi * np.outer(freqs, xs))
    mtf = np.abs(basis @ out.sum(axis=0)) / np.abs(basis @ g.sum(axis=0))
    first_min = freqs[np.argmax(np.diff(mtf) > 0)]
    assert first_min == pytest.approx(1 / (2 * s), abs=0.002)
    assert mtf.min() < 5e-3  # the frequency grid steps over the exact zero
    # folded into a pixel PSF: at 1 / (2 s) the bank PSF's MTF vanishes too
    plain = sensor_psf(540, 8.0, 1.0, 41)
    with_olpf = sensor_psf(540, 8.0, 1.0, 41, olpf_separation_um=s)
    n = np.arange(41) - 20
    e = np.exp(-2j * np.pi * n / (2 * s))
    ratio = abs(e @ with_olpf.sum(0)) / abs(e @ plain.sum(0))
    assert ratio < 0.02


def test_pixel_aperture_and_olpf_agree_with_box_integration():
    from data_gen.optics import pixel_psf

    a = sensor_psf(540, 2.8, 3.0, 15, {4: 0.1})
    b = pixel_psf(540, 2.8, 3.0, 15, {4: 0.1})
    np.testing.assert_allclose(a, b, atol=2e-3)
    smaller = sensor_psf(540, 2.8, 3.0, 15, {4: 0.1}, fill_factor=0.25)
    assert smaller[7, 7] > a[7, 7]  # a smaller aperture integrates less of the spread


@pytest.mark.parametrize("name", ["sharp_prime", "soft_zoom"])
@pytest.mark.slow
def test_preset_banks_are_normalised_finite_and_state_dependent(name):
    b = build_bank(preset(name), 3)
    assert np.isfinite(b.grid).all() and (b.grid >= 0).all()
    np.testing.assert_allclose(b.grid.sum(axis=(-2, -1)), 1, atol=1e-5)
    assert len(b.states) == len(preset(name)["states"]) and b.grid.shape[0] == len(b.states)
    # wide open is blurrier in the corner than stopped down to f/8 - f/5.6
    corner = [spread(b.grid[s, -1, 1, 1]) for s in range(len(b.states))]
    assert corner[0] > corner[1]


def test_measured_grid_interpolation_stays_normalised():
    g = load_psf_grid(shared(*GRID), 3)
    assert g.shape == (9, 12, 3, 25, 25)
    rng = np.random.default_rng(1)
    for fy, fx in rng.uniform(-0.1, 1.1, (20, 2)):
        p = interpolate_grid(g, fy, fx)
        assert np.isfinite(p).all() and (p >= 0).all()
        np.testing.assert_allclose(p.sum(axis=(-2, -1)), 1, atol=1e-5)
    # at a grid point: that PSF; half way between two: their mean
    np.testing.assert_allclose(interpolate_grid(g, 2.5 / 9, 4.5 / 12), g[2, 4], atol=1e-7)
    np.testing.assert_allclose(
        interpolate_grid(g, 2.5 / 9, 5 / 12), 0.5 * (g[2, 4] + g[2, 5]), atol=1e-6
    )
    b = build_bank(preset("measured_63762bb"), 3)
    assert b.grid.shape == (1, 17, 23, 3, 25, 25)
    np.testing.assert_allclose(b.grid.sum(axis=(-2, -1)), 1, atol=1e-5)
    np.testing.assert_allclose(b.grid[0, 4, 8], g[2, 4], atol=1e-7)  # measured points kept


def test_measured_preset_works_in_the_generator(tmp_path):
    shared(*GRID)
    cfg = compose_cfg(f"out_dir={tmp_path / 'ds'}", "lens=measured_63762bb", "source.size=96")
    generate(cfg)
    with h5py.File(tmp_path / "ds" / "shard-00000-of-00003.h5", "r") as f:
        meta = f["meta"][:]
        assert f["psfs"].shape == (17 * 23, 3, 25, 25)
    assert len(set(meta["psf_index"].tolist())) > 1
    assert np.allclose(meta["f_number"], 2.27)


@pytest.mark.slow
def test_field_bank_in_the_generator_records_state_and_position(tmp_path):
    cfg = compose_cfg(f"out_dir={tmp_path / 'ds'}", "lens=sharp_prime", "samples_per_shard=40")
    generate(cfg)
    b = build_bank(cfg["lens"], 3)
    with h5py.File(tmp_path / "ds" / "shard-00001-of-00003.h5", "r") as f:
        meta = f["meta"][:]
        np.testing.assert_array_equal(f["psfs"][()], b.psfs)
    assert len(set(meta["psf_index"].tolist())) >= 10
    for m in meta:
        st = b.state_of(int(m["psf_index"]))
        assert m["f_number"] == pytest.approx(st.f_number)
        _, i, j = np.unravel_index(int(m["psf_index"]), b.grid.shape[:3])
        assert abs(b.axis1[i] - m["image_height"]) <= 0.5 / (len(b.axis1) - 1) + 1e-6
        if i > 0:
            dphi = (m["azimuth"] - b.axis2[j] + math.pi) % (2 * math.pi) - math.pi
            assert abs(dphi) <= math.pi / len(b.axis2) + 1e-5
    assert {round(float(v), 1) for v in meta["f_number"]} == {1.8, 2.8, 5.6, 16.0}


@pytest.mark.slow
def test_bank_file_round_trip_cache_and_cli(tmp_path):
    out = tmp_path / "bank.h5"
    r = subprocess.run(
        [sys.executable, "-m", "data_gen.optics", "bank", "lens=soft_zoom", f"out={out}",
         "lens.heights=3", "lens.azimuths=4", "progress=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    b = load_bank(out)
    assert b.grid.shape == (6, 3, 4, 3, 21, 21) and b.geometry == "polar"
    assert b.description["name"] == "soft_zoom_24_70" and b.states[2].zoom == 50
    with h5py.File(out, "r") as f:
        assert "image_height" in f.attrs["axes"] and yaml.safe_load(f.attrs["lens"])["heights"] == 3
    # the generator uses it as lens=bank
    cfg = compose_cfg(f"out_dir={tmp_path / 'ds'}", "lens=bank", f"lens.path={out}")
    generate(cfg)
    with h5py.File(tmp_path / "ds" / "shard-00000-of-00003.h5", "r") as f:
        np.testing.assert_array_equal(f["psfs"][()], b.psfs)
    # the cache: a second build of the same description reads the stored bank
    d = preset("soft_zoom") | {"heights": 2, "azimuths": 2}
    cache = tmp_path / "cache"
    b1 = build_bank(d, 3, cache)
    files = list(cache.glob("bank-*.h5"))
    assert len(files) == 1
    b2 = build_bank(d, 3, cache)
    np.testing.assert_array_equal(b1.grid, b2.grid)
    assert list(cache.glob("bank-*.h5")) == files
    build_bank(d | {"heights": 3}, 3, cache)  # another description, another entry
    assert len(list(cache.glob("bank-*.h5"))) == 2


@pytest.mark.slow
def test_atlas_png(tmp_path):
    out = tmp_path / "atlas.png"
    r = subprocess.run(
        [sys.executable, "-m", "data_gen.optics", "atlas", "lens=sharp_prime", f"out={out}",
         "points=[3,4]", "zoom=2", "scale=gamma", "progress=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    im = Image.open(out)
    k, gap, title = 21 * 2, 2, 14
    assert im.size == (4 * (4 * (k + gap) + gap + gap), 3 * (k + gap) + gap + title)
    a = np.asarray(im.convert("RGB")).astype(int)
    assert a.max() == 255  # each PSF drawn relative to its peak
    assert "sharp_prime_50" in im.text["config"]


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"states": []}, r"lens.states is missing or empty"),
        ({"states": None}, r"lens.states is missing or empty"),
        (
            {"states": [{"focal_length_mm": 50}]},
            r"lens.states\[0\].f_number: required setting is missing",
        ),
        (
            {
                "states": [
                    {"focal_length_mm": 50, "f_number": 2},
                    {"focal_length_mm": 50, "f_number": -2},
                ]
            },
            r"lens.states\[1\].f_number = -2: must be > 0",
        ),
        ({"size": 20}, r"lens.size = 20: must be an odd integer"),
        ({"aberrations_um": {"comma": 0.1}}, r"lens.aberrations_um.comma: unknown setting"),
        ({"wavelengths_nm": [540, 465]}, r"wavelengths_nm has 2 values but channels = 3"),
        ({"sensor_mm": [15.6]}, r"lens.sensor_mm"),
        ({"fill_factor": 0}, r"lens.fill_factor = 0: must be > 0"),
    ],
)
def test_bad_lens_descriptions_are_rejected_by_key(change, needle):
    with pytest.raises(InputError, match=needle):
        build_bank(lens(**change), 3)


def test_bad_psf_grids_are_rejected(tmp_path):
    g = np.full((3, 4, 5, 5, 3), 1 / 25, np.float32)
    wrong_axes = tmp_path / "wrong_axes.npy"
    np.save(wrong_axes, np.moveaxis(g, 4, 2))  # (3, 4, 3, 5, 5)
    with pytest.raises(InputError, match=r"shape \(3, 4, 3, 5, 5\).*are the axes right"):
        load_psf_grid(wrong_axes, 3)
    assert load_psf_grid(wrong_axes, 3, ["row", "col", "c", "y", "x"]).shape == (3, 4, 3, 5, 5)
    nan = tmp_path / "nan.npy"
    bad = g.copy()
    bad[1, 2, 3, 4, 0] = np.nan
    np.save(nan, bad)
    with pytest.raises(
        InputError, match=r"1 non-finite values \(first at row, col, c, y, x = \(1, 2, 0, 3, 4\)\)"
    ):
        load_psf_grid(nan, 3)
    flat = tmp_path / "flat.npy"
    np.save(flat, g[0])
    with pytest.raises(InputError, match="expected 5 axes"):
        load_psf_grid(flat, 3)
    with pytest.raises(InputError, match="does not exist"):
        load_psf_grid(tmp_path / "missing.npy", 3)
    with pytest.raises(InputError, match=r"axes = \['row', 'row'"):
        load_psf_grid(wrong_axes, 3, ["row", "row", "c", "y", "x"])


# ---- symmetries: which flips and turns a training patch may take ---------------------------
def test_bank_symmetries_are_the_flips_and_turns_the_lens_has():
    from data_gen.optics.symmetry import ALL, NAMES, bank_symmetries, dihedral

    # soft_prime: coma along x and 0° astigmatism are mirror-symmetric about the x axis only
    assert [NAMES[t] for t in bank_symmetries(build_bank(preset("soft_prime"), 3).psfs)] == [
        "identity",
        "flip-y",
    ]
    assert bank_symmetries(build_bank(preset("diffraction"), 3).psfs) == ALL  # an Airy disc
    # a rotationally symmetric lens with coma: its bank has every orientation it needs
    # when the azimuths include the quarter turns (8 x 45°), only the half turn and the
    # mirrors with 6 x 60°
    coma = {"coma": 0.15, "astigmatism": 0.1}
    assert bank_symmetries(bank_of(lens(aberrations_um=coma, azimuths=8)).psfs) == ALL
    six = bank_symmetries(bank_of(lens(aberrations_um=coma, azimuths=6)).psfs)
    assert [NAMES[t] for t in six] == ["identity", "rot180", "flip-x", "flip-y"]
    # a lone asymmetric PSF has none but the identity; adding its mirror image adds that flip
    rng = np.random.default_rng(0)
    p = rng.random((1, 3, 9, 9))
    p /= p.sum(axis=(-2, -1), keepdims=True)
    assert bank_symmetries(p) == (0,)
    both = np.concatenate([p, np.ascontiguousarray(dihedral(p, 4))])
    assert bank_symmetries(both) == (0, 4)
    # the names say what the transforms do
    a = np.arange(9).reshape(3, 3)
    assert (dihedral(a, 6) == a[::-1]).all() and (dihedral(a, 5) == a.T).all()
    assert (dihedral(a, 1) == np.rot90(a)).all()


def test_bank_symmetries_are_kept_by_the_bank_they_belong_to(tmp_path):
    """A large measured bank takes seconds: its symmetries are kept in the cache under the
    bank's sha256, read back on the next load, and recomputed when the file is damaged."""
    from data_gen.optics.symmetry import dihedral, kept_bank_symmetries

    rng = np.random.default_rng(1)
    p = rng.random((1, 3, 9, 9))
    p /= p.sum(axis=(-2, -1), keepdims=True)
    both = np.concatenate([p, np.ascontiguousarray(dihedral(p, 6))])
    assert kept_bank_symmetries(both, tmp_path) == (0, 6)
    (f,) = tmp_path.glob("symmetries-*.json")
    assert json.loads(f.read_text()) == {"symmetries": [0, 6]}
    f.write_text(json.dumps({"symmetries": [0, 2]}))  # what is kept is what is read
    assert kept_bank_symmetries(both, tmp_path) == (0, 2)
    assert kept_bank_symmetries(p, tmp_path) == (0,)  # another bank, another file
    assert len(list(tmp_path.glob("symmetries-*.json"))) == 2
    for bad in ("{not json", '{"symmetries": [3, 9]}', "[]"):
        f.write_text(bad)
        assert kept_bank_symmetries(both, tmp_path) == (0, 6)
        assert json.loads(f.read_text()) == {"symmetries": [0, 6]}
    assert kept_bank_symmetries(both, None) == (0, 6)


def test_each_transform_is_undone_and_training_transforms_follow_the_setting():
    from data_gen.optics.symmetry import ALL, INVERSE, augmentation_transforms, dihedral

    a = np.arange(12.0).reshape(1, 3, 4)  # not square: a quarter turn changes the shape
    for t in ALL:
        assert np.array_equal(dihedral(dihedral(a, t), INVERSE[t]), a), t
    psfs = build_bank(preset("soft_prime"), 3).psfs
    assert augmentation_transforms("all") == ALL and augmentation_transforms("none") == (0,)
    assert augmentation_transforms("lens", psfs) == (0, 6)
    with pytest.raises(ValueError, match="geometric = 'mirror'"):
        augmentation_transforms("mirror")


def test_a_single_psf_lens_makes_a_one_point_bank_file_and_atlas(tmp_path):
    for cmd, out in (("bank", "sp.h5"), ("atlas", "sp.png")):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "data_gen.optics",
                cmd,
                "lens=soft_prime",
                f"out={tmp_path / out}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
    bank = load_bank(tmp_path / "sp.h5")
    assert bank.grid.shape == (1, 1, 1, 3, 31, 31)
    np.testing.assert_allclose(bank.psfs[0], build_bank(preset("soft_prime"), 3).psfs[0], atol=1e-7)
    assert Image.open(tmp_path / "sp.png").size[0] > 100
