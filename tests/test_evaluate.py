"""Evaluation on real photographs: whole-frame rendering, classical baselines, metrics, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_gen.generate import build_pipeline
from data_gen.noise import NoiseModel
from data_gen.render import SampleSpec, render_frame
from data_gen.render_chain import SampleRenderer
from data_gen.sources import Frame
from residual_train.evaluate import BUILTIN, load_images
from residual_train.evaluate.baselines import (
    anscombe,
    anscombe_inverse,
    bm3d_wiener,
    psnr,
    wiener,
    wiener_wavelet,
)
from residual_train.evaluate.metrics import NoiseKept, Pearson, error_bands
from tests.conftest import ROOT, compose_cfg
from tests.helpers.cli import run_module

NOISE_6400 = NoiseModel([2.54e-3] * 3, [2.29e-6] * 3)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    ((_, img),) = load_images("builtin", 2.0, True, max_images=1, max_size=128)
    return img


def test_builtin_photographs_are_real_linear_images():
    images = load_images("builtin", 2.0, True)
    assert [n for n, _ in images] == [f"builtin/{b}" for b in BUILTIN]
    for _, im in images:
        assert im.shape[0] == 3 and min(im.shape[1:]) >= 150 and im.dtype == np.float32
        assert 0 <= im.min() and im.max() <= 1 and 0.02 < im.mean() < 0.6  # linear light
        # real photographs: neighbouring pixels correlate strongly, unlike noise
        g = im[1]
        assert np.corrcoef(g[:, :-1].ravel(), g[:, 1:].ravel())[0, 1] > 0.8


def test_frame_rendering_is_the_generators_physics(photo):
    """Position-independent lens: the whole frame equals the patch renderer's blur, and the
    noise has the sensor model's variance."""
    pipe = build_pipeline(compose_cfg("out_dir=x", "lens.size=15"))
    r = render_frame(photo, pipe.bank, NOISE_6400, np.random.default_rng(0))
    k = pipe.bank.size
    p = photo.shape[1] - k + 1
    spec = SampleSpec(Frame("f", photo), k // 2, k // 2, 1.0, None, 0, 0.0, 0.0, 0, None)
    spec.noise = pipe.sensor.params(6400)
    spec.rng = np.random.default_rng(0)
    out = SampleRenderer(pipe.chain, pipe.bank.psfs, p, k // 2)([spec])[0]
    np.testing.assert_allclose(r["clean"], out["clean"][0][:, :, : r["clean"].shape[2]], atol=1e-6)
    np.testing.assert_allclose(r["blur"], out["blur"][0][:, :, : r["blur"].shape[2]], atol=1e-5)
    n = (r["noise_blur"] - r["blur"]) / NOISE_6400.std(r["blur"])
    ok = r["noise_blur"] < 1
    assert abs(n[ok].std() - 1) < 0.03 and abs(n[ok].mean()) < 0.03
    # the same realisation in both noisy images (docs/design.md §1)
    assert np.allclose(
        (r["noise"] - r["clean"])[r["noise"] < 1],
        (r["noise_blur"] - r["blur"])[r["noise"] < 1],
        atol=1e-6,
    )


def test_frame_rendering_follows_a_field_varying_lens():
    """Every pixel takes the bank PSF of its position: the index map follows the bank's rule,
    several PSFs are used, and each region equals the convolution with its own PSF."""
    from scipy.signal import fftconvolve

    pipe = build_pipeline(compose_cfg("out_dir=x", "lens=sharp_prime"))
    bank = pipe.bank
    rng = np.random.default_rng(1)
    img = rng.uniform(0.05, 0.6, (3, 160, 220)).astype(np.float32)
    r = render_frame(img, bank, NOISE_6400, np.random.default_rng(2))
    idx = r["psf_index"]
    assert len(np.unique(idx)) >= 6
    k = bank.size
    h, w = img.shape[1:]
    state = int(idx[0, 0]) // (bank.grid.shape[1] * bank.grid.shape[2])
    for y, x in ((4, 4), (80, 100), (idx.shape[0] - 5, idx.shape[1] - 5)):
        yb, xb = y // 8 * 8, x // 8 * 8
        cy = k // 2 + yb + min(8, idx.shape[0] - yb) / 2
        cx = k // 2 + xb + min(8, idx.shape[1] - xb) / 2
        assert idx[y, x] == bank.index_at(cy / h, cx / w, state)
        psf = bank.psfs[idx[y, x]]
        want = [fftconvolve(img[c], psf[c], mode="valid")[y, x] for c in range(3)]
        np.testing.assert_allclose(r["blur"][:, y, x], want, rtol=1e-4)


def test_anscombe_stabilises_the_sensor_noise_and_inverts():
    rng = np.random.default_rng(3)
    for level in (0.05, 0.1, 0.5):  # (near black, clipped Gaussian noise is not stabilised)
        s = np.full((3, 100, 100), level)
        z = s + NOISE_6400.std(s.astype(np.float32)) * rng.standard_normal(s.shape)
        f = anscombe(z, NOISE_6400)
        assert abs(f.std() - 1) < 0.06, (level, f.std())
    v = np.linspace(0.0, 1.0, 50)[None, :, None].repeat(3, 0)
    back = anscombe_inverse(anscombe(v, NOISE_6400), NOISE_6400)
    np.testing.assert_allclose(back, v + NOISE_6400.A[:, None, None] / 4, atol=1e-7)


def test_wiener_recovers_a_noise_free_blur_and_baselines_beat_the_input(photo):
    pipe = build_pipeline(compose_cfg("out_dir=x", "lens.size=15"))
    noise = pipe.sensor.params(400).model
    r = render_frame(photo, pipe.bank, noise, np.random.default_rng(4))
    idx = r["psf_index"]
    # noise-free: deconvolution with the true PSF undoes most of the blur (a small frame's
    # edge band, where the padding only guesses the scene, limits it)
    assert (
        psnr(wiener(r["blur"], pipe.bank.psfs, idx, 1e-5), r["clean"])
        > psnr(r["blur"], r["clean"]) + 8
    )
    x, clean = r["noise_blur"], r["clean"]
    p_in = psnr(x, clean)
    ww = wiener_wavelet(x, pipe.bank.psfs, idx, noise, clean)
    bw = bm3d_wiener(x, pipe.bank.psfs, idx, noise, clean)
    assert psnr(ww, clean) > p_in + 2 and psnr(bw, clean) > psnr(ww, clean)


def test_practical_baselines_need_no_clean_image_and_restore(photo):
    """The non-oracle pipelines choose their regularisation from the noise model, the PSF and
    the degraded image alone (clean=None) and still beat the input clearly."""
    from residual_train.evaluate.baselines import (
        bm3d_wiener_practical,
        wiener_practical,
        wiener_wavelet_practical,
    )

    pipe = build_pipeline(compose_cfg("out_dir=x", "lens.size=15"))
    noise = pipe.sensor.params(1600).model
    r = render_frame(photo, pipe.bank, noise, np.random.default_rng(6))
    idx, x, clean = r["psf_index"], r["noise_blur"], r["clean"]
    # (almost) noise-free: the prior's regularisation is tiny and the blur is undone
    tiny = np.full(3, 1e-9)
    assert psnr(wiener_practical(r["blur"], pipe.bank.psfs, idx, tiny), clean) > (
        psnr(r["blur"], clean) + 6
    )
    p_in = psnr(x, clean)
    ww = wiener_wavelet_practical(x, pipe.bank.psfs, idx, noise, None)
    bw = bm3d_wiener_practical(x, pipe.bank.psfs, idx, noise, None)
    assert psnr(ww, clean) > p_in + 2 and psnr(bw, clean) > psnr(ww, clean)
    # and the oracle, which may look at the clean image, is the bar
    assert psnr(bm3d_wiener(x, pipe.bank.psfs, idx, noise, clean), clean) > psnr(bw, clean) - 0.3


def test_per_set_margins_count_images_ahead_and_the_worst():
    from residual_train.evaluate.run import summarise_sets

    rows = []
    for name, m, b in (
        ("bsd400_val/a", 30.0, 29.0),
        ("bsd400_val/b", 31.0, 31.5),
        ("bsd400_val/c", 32.0, 31.0),
        ("kodak24/x", 40.0, 39.0),
    ):
        rows.append(
            {"image": name, "iso": 100.0, "psnr_input": 20.0, "psnr_model": m,
             "psnr_bm3d_wiener": b, "margin_over_bm3d_wiener": m - b}
        )  # fmt: skip
    out = summarise_sets(rows, [100], ["bm3d_wiener"])
    val = out["bsd400_val"]
    assert val["role"] == "validation" and val["images"] == 3
    (r,) = val["per_iso"]
    assert r["share_beating_bm3d_wiener"] == pytest.approx(2 / 3)
    assert r["worst_margin_over_bm3d_wiener"] == -0.5 and r["worst_image_bm3d_wiener"].endswith(
        "/b"
    )
    assert r["gain_over_bm3d_wiener"] == pytest.approx((1.0 - 0.5 + 1.0) / 3)
    assert out["kodak24"]["role"] == "test" and out["kodak24"]["per_iso"][0]["images"] == 1


def test_pearson_and_noise_kept_measure_what_they_say():
    rng = np.random.default_rng(5)
    ref = rng.standard_normal(200_000)
    est = 0.8 * ref + 0.6 * rng.standard_normal(ref.size)  # corr 0.8, std ratio 1
    p = Pearson().add(est[:100_000], ref[:100_000])
    p += Pearson().add(est[100_000:], ref[100_000:])
    assert abs(p.corr - 0.8) < 0.01 and abs(p.std_ratio - 1) < 0.01
    s = rng.uniform(0, 1, (3, 300, 300)).astype(np.float32)
    kept = NOISE_6400.std(s) * rng.standard_normal(s.shape).astype(np.float32)
    rows = NoiseKept().add(kept, s, NOISE_6400).rows(min_pixels=1000)
    assert len([r for r in rows if r["enough"]]) >= 5
    assert NoiseKept.worst(rows) < 0.05
    half = NoiseKept().add(kept * 0.5, s, NOISE_6400).rows(min_pixels=1000)
    assert all(abs(r["ratio"] - 0.5) < 0.03 for r in half if r["enough"])


def _evaluate(tmp_path, *args):
    return run_module("residual_train.evaluate", *args, cwd=tmp_path, timeout=600)


def test_error_bands_put_each_error_where_it_lies_and_add_up():
    rng = np.random.default_rng(0)
    clean = rng.random((3, 48, 71))[:, :, :70]
    yy, xx = np.mgrid[:48, :70]
    # a slow grey swell (period 70 px): luma, low frequencies
    swell = 0.01 * np.cos(2 * np.pi * xx / 70)
    b = error_bands(clean + swell, clean)
    assert b["low_Y"] < 50 and min(v for k, v in b.items() if k != "low_Y") > 100
    # a red / blue checkerboard of opposite signs: chroma C1, high frequencies
    check = 0.01 * (-1.0) ** (yy + xx)
    b = error_bands(clean + np.stack([check, 0 * check, -check]), clean)
    assert b["high_C1"] < 50 and min(v for k, v in b.items() if k != "high_C1") > 100
    # any error: the six parts add up to the whole image's MSE, odd and even widths
    for c in (clean, rng.random((3, 31, 71))):
        y = c + 0.02 * rng.standard_normal(c.shape)
        parts = error_bands(y, c)
        assert len(parts) == 6
        assert -10 * np.log10(sum(10 ** (-v / 10) for v in parts.values())) == pytest.approx(
            psnr(y, c), abs=1e-6
        )
    # a grey image keeps its one channel
    assert set(error_bands(clean[:1] + swell, clean[:1])) == {"low_ch0", "high_ch0"}


@pytest.mark.slow
def test_evaluate_cli_writes_metrics_and_a_page_for_the_shipped_model(tmp_path):
    out = tmp_path / "ev"
    r = _evaluate(
        tmp_path,
        "model=default",
        "images=builtin",
        f"out={out}",
        "max_images=2",
        "max_size=112",
        "isos=[400,6400]",
        "min_bin_pixels=2000",
        f"cache={tmp_path / 'cache'}",
        "progress=false",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["isos"] == [400.0, 6400.0] and len(m["images"]) == 2
    for row in m["per_iso"]:
        for key in (
            "psnr_input",
            "psnr_model",
            "psnr_wiener_wavelet",
            "psnr_bm3d_wiener",
            "noise_corr",
            "noise_std_ratio",
            "psnr_blur_head",
            "psnr_noise_head",
            "ssim_model",
        ):
            assert np.isfinite(row[key]), key
        assert row["psnr_model"] > row["psnr_input"] + 2
        assert 0 < row["noise_corr"] <= 1
        # where the error lies, for the model and each baseline (means over images)
        for who in ("model", "bm3d_wiener", "wiener_wavelet"):
            parts = list(row[f"bands_{who}"].values())
            assert len(parts) == 6 and np.isfinite(parts).all(), who
        # the method with the rendering's exact residuals keeps the camera's noise level
        true = [b for b in row["noise_kept_true_residuals"] if b["enough"]]
        assert true and all(abs(b["ratio"] - 1) < 0.1 for b in true), true
    assert len(m["per_image"]) == 4
    # per set (builtin: 2 images) and per image: margins over every baseline, oracle and not
    assert m["sets"] == {"builtin": "other"}
    for r in m["per_set"]["builtin"]["per_iso"]:
        for b in ("bm3d_wiener", "bm3d_wiener_practical", "wiener_wavelet_practical"):
            assert 0 <= r[f"share_beating_{b}"] <= 1 and np.isfinite(r[f"worst_margin_over_{b}"])
    assert all(np.isfinite(r["margin_over_bm3d_wiener_practical"]) for r in m["per_image"])
    html = (out / "index.html").read_text()
    assert "bm3d_wiener" in html and "noise_kept.png" in html and "Where the error lies" in html
    for r in m["per_image"]:  # each image's six parts add up to its PSNR
        total = -10 * np.log10(sum(10 ** (-v / 10) for v in r["bands_model"].values()))
        assert total == pytest.approx(r["psnr_model"], abs=1e-4)
    assert (out / "psnr_vs_iso.png").stat().st_size > 1000
    assert (out / "config.yaml").is_file()
    # baselines were cached: a second run with another out reuses them
    assert len(list((tmp_path / "cache").glob("bm3d_wiener-*.npy"))) == 4


def test_evaluate_with_self_ensemble_records_its_views_in_every_worker(tmp_path):
    """The maps averaged over the flips the model was trained with, in this process and in
    spawned workers alike; the views are recorded with the figures."""
    common = ["model=default", "images=builtin", "max_images=2", "max_size=96", "isos=[400]"]
    common += ["baselines=[]", "progress=false"]
    got = {}
    for name, args in {
        "plain": ["workers=1"],
        "here": ["workers=1", "self_ensemble=true"],
        "spawned": ["workers=2", "self_ensemble=true"],
        "trained": ["workers=2", "self_ensemble=trained"],  # the workers load the same choice
    }.items():
        r = _evaluate(tmp_path, *common, *args, f"out={tmp_path / name}")
        assert r.returncode == 0, r.stderr[-3000:]
        got[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert got["plain"]["model"]["views"] == {"blur": ["identity"], "noise": ["identity"]}
    assert got["here"]["model"]["views"]["blur"] == ["identity", "flip-y"]
    assert len(got["here"]["model"]["views"]["noise"]) == 8
    assert got["trained"]["model"]["views"] == {
        h: ["identity", "flip-y"] for h in ("blur", "noise")
    }
    psnrs = {k: [r["psnr_model"] for r in m["per_image"]] for k, m in got.items()}
    assert psnrs["here"] == psnrs["spawned"] and psnrs["here"] != psnrs["plain"]
    assert np.mean(psnrs["here"]) > np.mean(psnrs["plain"])
    assert psnrs["trained"] not in (psnrs["here"], psnrs["plain"])


def test_the_views_script_measures_what_the_self_ensemble_computes(tmp_path):
    """scripts/ensemble_views.py renders as evaluate does and composes each map over each
    variant's views: its `plain`, `trained` and `noise_all` are evaluate's model with
    self_ensemble=false, trained (both maps over the trained flip) and true (the noise map
    over all eight)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    img = (np.random.default_rng(5).random((96, 128, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(photos / "a.png")
    common = [f"images={photos}", "isos=[800]", "baselines=[]", "progress=false", "shrink=1"]
    got = {}
    runs = [("plain", []), ("trained", ["self_ensemble=trained"])]
    for name, extra in [*runs, ("noise_all", ["self_ensemble=true"])]:
        r = _evaluate(tmp_path, *common, *extra, f"out={tmp_path / name}")
        assert r.returncode == 0, r.stderr[-3000:]
        got[name] = json.loads((tmp_path / name / "metrics.json").read_text())["per_image"][0]
    cmd = [sys.executable, str(ROOT / "scripts" / "ensemble_views.py"), "--images", str(photos)]
    cmd += ["--isos", "800", "--shrink", "1", "--workers", "1", "--out", str(tmp_path / "v.json")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = json.loads((tmp_path / "v.json").read_text())["per_image"]
    assert "noise_all" in r.stdout and row["image"] == got["plain"]["image"]
    for name in got:
        assert row[name] == pytest.approx(got[name]["psnr_model"], abs=1e-4)
    assert row["trained"] != row["plain"] and row["both_all"] < row["trained"]
    assert row["noise_all"] != row["trained"]
    # --colours: the noise map also over the six orders of the colour planes
    r = subprocess.run([*cmd[:-1], str(tmp_path / "c.json"), "--colours"], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    (col,) = json.loads((tmp_path / "c.json").read_text())["per_image"]
    assert {k: col[k] for k in row} == row  # the variants without colours are unchanged
    assert len({col["colours"], col["noise_all_colours"], row["noise_all"]}) == 3
    bad = subprocess.run([*cmd[:2], "--model", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "'nope'" in bad.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["images=/nonexistent/folder"], "images = '/nonexistent/folder': not a folder"),
        (["model=/nonexistent/model"], "not an export directory"),
        (["baselines=[magic]"], "baselines: unknown ['magic']"),
        (["isos=[10]"], "outside the model's training range"),
    ],
)
def test_evaluate_cli_bad_input_is_one_line(tmp_path, args, needle):
    r = _evaluate(tmp_path, f"out={tmp_path / 'o'}", "max_images=1", "max_size=64", *args)
    assert r.returncode == 2, r.stderr[-2000:]
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_evaluate_refuses_a_non_empty_out(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("mine")
    r = _evaluate(tmp_path, f"out={tmp_path / 'o'}")
    assert r.returncode == 2 and "already holds files" in r.stderr
    assert (tmp_path / "o" / "keep.txt").read_text() == "mine"


def test_evaluate_runs_from_a_fresh_directory_without_shared_data(tmp_path):
    assert ROOT not in tmp_path.parents  # the CLI resolves its configs from the package


def test_the_pages_escape_names_they_show(tmp_path):
    """An image, set or model named like markup is shown as text on the evaluation pages
    (templates with autoescaping), never run as a script."""
    from residual_train.evaluate.page import write_components_page, write_page

    evil = "<script>alert(1)</script>"
    bins = [
        {
            "lo": 0.01,
            "hi": 0.1,
            "pixels": 9000,
            "sigma_model": 0.01,
            "sigma_kept": 0.011,
            "ratio": 1.1,
            "enough": True,
        }
    ]
    row = {
        "iso": 400.0,
        "images": 1,
        "psnr_input": 30.0,
        "psnr_model": 33.0,
        "noise_kept": bins,
        "noise_kept_true_residuals": bins,
        "noise_kept_unscaled": bins,
    }
    arrays = {
        k: np.full((3, 16, 16), 0.2, np.float32)
        for k in ("clean", "noise_blur", "model", "a1_b0", "R_blur", "R_noise")
    }
    result = {
        "baselines": [],
        "per_iso": [row],
        "images": [evil],
        "model": {"ref": evil, "path": evil},
        "per_set": {evil: {"role": "other", "images": 1, "per_iso": [row]}},
        "per_image": [{"image": evil, "iso": 400.0, "psnr_input": 30.0, "psnr_model": 33.0}],
        "arrays": {evil: {400.0: arrays}},
    }
    components = {
        "per_iso": [
            {
                "iso": 400.0,
                "component": evil,
                "images": 1,
                "psnr_input": 30.0,
                "psnr_model": 33.0,
                "worst_margin_over_input": 1.0,
            }
        ],
        "model": {"path": evil, "components": [evil]},
        "per_image": [{"image": evil, "iso": 400.0, "component": evil, "psnr_model": 33.0}],
        "depth_sources": {evil: evil},
        "baselines": {evil: [evil]},
    }
    (tmp_path / "c").mkdir()
    for page in (
        write_page(result, tmp_path / "e", title=evil),
        write_components_page(components, tmp_path / "c", title=evil),
    ):
        text = page.read_text()
        assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert text.count("&lt;script&gt;") >= 6, text  # title, heading, model, tables, ...
