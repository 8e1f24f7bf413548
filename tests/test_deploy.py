"""Export, registry, tiled deployment and composition at strengths (docs/design.md §4)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from data_gen.core.errors import InputError
from data_gen.generate import generate
from data_gen.noise import NoiseModel
from data_gen.optics.symmetry import INVERSE, dihedral
from residual_train.deploy import load_maps, load_model, read_input, tile_weights
from residual_train.deploy.compose import compose, compose_blur_noise, compose_reference
from residual_train.deploy.ensemble import ensemble_maps
from residual_train.release.export import ExportError, export
from residual_train.release.registry import Registry, TamperedError
from residual_train.training.train import train
from tests.conftest import ROOT, compose_cfg
from tests.helpers.cli import one_line_error
from tests.helpers.cli import run_module as run
from tests.helpers.training import train_cfg


def consistent(x, rb, rn, a, b, noise):
    """The numpy reference of the blur + noise composition."""
    return compose_reference(x, {"blur": rb, "noise": rn}, {"blur": a, "noise": b}, noise)


def literal(x, rb, rn, a, b, noise):
    return compose_blur_noise(x, rb, rn, a, b, noise, mode="literal")


# ---- composition with the true residuals of generated data --------------------------------
@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    """Float32 shards at high ISO, fixed exposure: (arrays, A, B) per sample."""
    d = tmp_path_factory.mktemp("truth") / "ds"
    generate(
        compose_cfg(
            f"out_dir={d}",
            "shards=1",
            "samples_per_shard=24",
            "patch_size=48",
            "source.size=128",
            "patches_per_source=6",
            "lens.size=15",
            "sensor.iso=[6400]",
            "exposure.min=0.6",
            "exposure.max=0.6",
        )
    )
    with h5py.File(next(d.glob("*.h5"))) as f:
        arr = {k: f[k][:].astype(np.float32) for k in ("clean", "blur", "noise", "noise_blur")}
        meta = f["meta"][:]
    span = float(meta["white"][0] - meta["ob"][0])
    A = (meta["k1"][0] * 64 / span).astype(np.float32)
    B = (meta["k0"][0] * 64 / span**2).astype(np.float32)
    return arr, NoiseModel(A, B)


def per_sample(fn, arr, noise, a, b):
    x = arr["noise_blur"]
    rb, rn = arr["noise"] - x, arr["blur"] - x
    return np.stack([fn(x[i], rb[i], rn[i], a, b, noise) for i in range(len(x))])


def test_zero_strengths_return_the_input_bit_for_bit(truth):
    arr, noise = truth
    for fn in (consistent, compose_blur_noise, literal):
        assert np.array_equal(per_sample(fn, arr, noise, 0, 0), arr["noise_blur"])


def test_full_strengths_return_the_clean_patch(truth):
    arr, noise = truth
    y = per_sample(compose_blur_noise, arr, noise, 1, 1)
    ok = (arr["noise"] < 1) & (arr["noise_blur"] < 1)
    np.testing.assert_allclose(y[ok], arr["clean"][ok], atol=2e-6)


def test_intermediate_strengths_interpolate(truth):
    arr, noise = truth
    f = compose_blur_noise
    y0, y5, y1 = (per_sample(f, arr, noise, a, 1) for a in (0, 0.5, 1))
    np.testing.assert_allclose(y5, (y0 + y1) / 2, atol=2e-6)  # linear in a at b = 1
    n0, n5, n1 = (per_sample(f, arr, noise, 0, b) for b in (0, 0.5, 1))
    np.testing.assert_allclose(n5, (n0 + n1) / 2, atol=2e-6)  # linear in b at a = 0
    # at a = 1 the noise level decreases monotonically with b
    e = [np.var(per_sample(f, arr, noise, 1, b) - arr["clean"]) for b in (0, 0.5, 0.9)]
    assert e[0] > e[1] > e[2]


def test_sharp_output_has_the_noise_of_the_sharp_image_not_the_blurred_one(truth):
    """a = 1, b = 0: noise variance follows σ²(clean); reusing R_n would give σ²(blur)."""
    arr, noise = truth
    y = per_sample(compose_blur_noise, arr, noise, 1, 0)
    x = arr["noise_blur"]
    naive = x + (arr["noise"] - x)  # = x + R_b: the unmodified noise residual kept
    s, bl = arr["clean"], arr["blur"]
    var_s = noise.variance(s)
    dark_side = (bl > s + 0.04) & (arr["noise"] < 1) & (arr["noise_blur"] < 1)  # edge pixels
    assert dark_side.sum() > 2000
    ratio = ((y - s) ** 2 / var_s)[dark_side].mean()
    ratio_naive = ((naive - s) ** 2 / var_s)[dark_side].mean()
    tol = 5 * np.sqrt(2 / dark_side.sum())
    assert abs(ratio - 1) < max(tol, 0.03), ratio
    assert ratio_naive > 1.2, ratio_naive  # too much noise in shadows next to highlights


def test_the_kernel_is_the_reference_formula_for_any_chain(truth):
    """The compiled kernel and the numpy reference agree, for blur + noise in both modes and
    for a longer chain; a gain first makes the blur follow its slope."""
    arr, noise = truth
    x = arr["noise_blur"][0]
    rb, rn = arr["noise"][0] - x, arr["blur"][0] - x
    for a, b in ((0.3, 0.6), (1, 0), (0, 1), (-1, 2)):
        for mode in ("consistent", "literal"):
            got = compose_blur_noise(x, rb, rn, a, b, noise, mode=mode)
            want = compose_reference(
                x, {"blur": rb, "noise": rn}, {"blur": a, "noise": b}, noise, mode
            )
            np.testing.assert_allclose(got, want, atol=1e-6)
    rl = np.full_like(x, 0.01)  # relighting first in physical order
    maps = {"relight": rl, "blur": rb, "noise": rn}
    np.testing.assert_allclose(compose(x, maps, {}, noise), x + rl + rb + rn, atol=1e-6)
    s = {"relight": 1, "blur": 0.3, "noise": 0.5}
    np.testing.assert_allclose(
        compose(x, maps, s, noise), compose_reference(x, maps, s, noise), atol=1e-6
    )


def test_literal_mode_differs_from_consistent_but_agrees_at_zero_noise_strength(truth):
    arr, noise = truth
    lit = per_sample(literal, arr, noise, 1, 1)
    con = per_sample(consistent, arr, noise, 1, 1)
    assert not np.allclose(lit, con)
    np.testing.assert_allclose(
        per_sample(literal, arr, noise, 0.7, 0),
        arr["noise_blur"] + 0.7 * (arr["noise"] - arr["noise_blur"]),
        atol=1e-6,
    )


@pytest.mark.parametrize("bad", [-1.1, 2.5, "x", float("nan"), True])
def test_strength_outside_range_is_refused(bad):
    z = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(InputError, match="strengths.blur"):
        compose_blur_noise(z, z, z, bad, 0.5, NoiseModel(np.ones(3), np.ones(3)))


# ---- export, registry, deploy --------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(trained_model) -> Path:
    return trained_model["exp"]


def test_export_writes_onnx_safetensors_and_a_complete_card(exported):
    card = json.loads((exported / "card.json").read_text())
    assert card["components"] == ["blur", "noise"] and card["outputs"] == ["R_blur", "R_noise"]
    assert card["layout"] == "rgb" and card["channels"] == 3 and "0 = black" in card["scale"]
    assert card["parity"]["max_abs_diff"] <= 1e-4
    assert any(s[2] % card["stride"] for s in card["parity"]["shapes"])  # odd sizes checked
    assert card["noise_model"]["source"]["k1"] == 0.63 and card["lens"]["f_number"] == 2.8
    assert card["dataset"]["config_hash"] and card["training"]["model"]["width"] == 8
    assert card["metrics"]["monitor"] == "val/psnr_full"
    from data_gen.shards import sha256_file

    for name, digest in card["files"].items():
        assert sha256_file(exported / name) == digest
    sums = (exported / "SHA256SUMS").read_text()
    assert sha256_file(exported / "card.json") in sums
    from safetensors.torch import load_file

    assert any(k.startswith("out.blur") for k in load_file(str(exported / "weights.safetensors")))
    # readable by others as far as the umask allows (mkdtemp and safetensors make 0700/0600)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(exported.stat().st_mode) == 0o777 & ~mask
    for p in exported.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask, p.name


def test_export_fails_loudly_on_parity_and_writes_nothing(exported, tmp_path):
    ckpt = Path(json.loads((exported / "card.json").read_text())["checkpoint"]["path"])
    with pytest.raises(ExportError, match="parity failed"):
        export(ckpt, tmp_path / "out", tol=0.0)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))
    with pytest.raises(InputError, match="already holds files"):
        export(ckpt, exported)


def test_export_of_a_checkpoint_moved_out_of_its_run_says_what_the_card_lacks(exported, tmp_path):
    from data_gen.core.cli import compose_config
    from data_gen.core.paths import APPS
    from residual_train.release.export import run as run_export

    ckpt = Path(json.loads((exported / "card.json").read_text())["checkpoint"]["path"])
    loose = tmp_path / "a" / "b.ckpt"
    loose.parent.mkdir()
    shutil.copy(ckpt, loose)
    got = run_export(compose_config(APPS, "export", [f"ckpt={loose}", f"out_dir={tmp_path / 'x'}"]))
    assert f"no training config at {tmp_path / 'config.yaml'}" in got["warning"]
    assert json.loads((tmp_path / "x" / "card.json").read_text())["noise_model"] is None
    got = run_export(compose_config(APPS, "export", [f"ckpt={ckpt}", f"out_dir={tmp_path / 'y'}"]))
    assert "warning" not in got


def test_tiled_inference_equals_whole_image_inference(exported):
    m = load_model(exported)
    x = np.random.default_rng(0).random((3, 150, 190), dtype=np.float32)
    whole = m.predict(x, tile=512)
    tiled = m.predict(x, tile=64, overlap=32)
    band = 16  # at the image border the whole image is padded to the stride, tiles are not
    for k in m.heads:
        assert np.abs(whole[k] - tiled[k])[:, band:-band, band:-band].max() <= 1e-4
    torch_model = load_model(exported, backend="torch")
    np.testing.assert_allclose(torch_model.predict(x, tile=512)["blur"], whole["blur"], atol=1e-5)
    w = tile_weights(190, 64, 64, 32)
    assert w[0] == 0 and w[-1] == 0 and w[32] == 1


def test_registry_versions_aliases_and_tamper_detection(exported, tmp_path):
    reg = Registry(tmp_path / "reg")
    reg.publish(exported, "dl", "1.0", aliases=["prod"])
    with pytest.raises(InputError, match="immutable"):
        reg.publish(exported, "dl", "1.0")
    reg.publish(exported, "dl", "1.1")
    idx = reg.index("dl")
    assert idx["aliases"]["latest"] == "1.1" and idx["aliases"]["prod"] == "1.0"
    assert idx["aliases"]["best"] == "1.0"  # equal metric: best does not move
    reg.set_alias("dl", "prod", "1.1")
    assert reg.resolve("dl:prod") == ("dl", "1.1")
    rows = reg.list()
    assert [r["version"] for r in rows] == ["1.0", "1.1"] and rows[0]["value"] is not None
    assert reg.fetch("dl:1.0") == tmp_path / "reg" / "dl" / "1.0"
    onnx = tmp_path / "reg" / "dl" / "1.0" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\x00")
    with pytest.raises(TamperedError, match="model.onnx"):
        reg.fetch("dl:1.0")
    card = tmp_path / "reg" / "dl" / "1.1" / "card.json"
    card.write_text(card.read_text().replace('"rgb"', '"rggb"'))
    with pytest.raises(TamperedError, match="card.json"):
        load_model("dl:prod", registry=tmp_path / "reg")
    with pytest.raises(InputError, match="neither a version nor an alias"):
        reg.resolve("dl:nope")


def _publish(root: str, src: str, version: str) -> str:
    return str(Registry(root).publish(src, "dl", version))


def test_jobs_publishing_at_once_lose_no_version(exported, tmp_path):
    """Several processes publish versions of one name together (a sweep's jobs): the
    registry's file lock serialises the index updates, so every version is listed."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    versions = [f"2.{i}" for i in range(6)]
    with ProcessPoolExecutor(3, mp_context=mp.get_context("fork")) as pool:
        done = list(pool.map(_publish, [str(tmp_path)] * 6, [str(exported)] * 6, versions))
    assert done == [str(tmp_path / "dl" / v) for v in versions]
    assert sorted(Registry(tmp_path).index("dl")["versions"]) == versions
    for v in versions:
        Registry(tmp_path).fetch(f"dl:{v}")  # each one complete and verified


def test_cli_deploy_then_recompose_without_the_network(exported, tmp_path):
    img = (np.random.default_rng(1).random((70, 90, 3)) * 65535).astype(np.uint16)
    Image.fromarray(img[..., 0]).save(tmp_path / "grey.png")
    tifffile.imwrite(tmp_path / "in.tif", img, photometric="rgb")
    r = run(
        "residual_train.deploy",
        f"model={exported}",
        f"input={tmp_path / 'in.tif'}",
        f"out_dir={tmp_path / 'o'}",
        "strengths.blur=0.8",
        "strengths.noise=0.3",
        "iso=800",
        "linearize=true",
        "tile=64",
        "overlap=32",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    x, maps, meta = load_maps(tmp_path / "o")
    np.testing.assert_allclose(x, read_input(tmp_path / "in.tif", linearize=True), atol=1e-7)
    noise = NoiseModel(meta["noise_A"], meta["noise_B"])
    want = consistent(x, maps["blur"], maps["noise"], 0.8, 0.3, noise)
    got = np.moveaxis(tifffile.imread(tmp_path / "o" / "composed.tif"), 2, 0)
    np.testing.assert_allclose(got, want, atol=1e-6)
    r = run(
        "residual_train.deploy.recompose",
        f"maps={tmp_path / 'o'}",
        "strengths.blur=0.2",
        "strengths.noise=1",
        f"out={tmp_path / 'r.npy'}",
    )
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(
        np.load(tmp_path / "r.npy"),
        consistent(x, maps["blur"], maps["noise"], 0.2, 1, noise),
        atol=1e-6,
    )
    r = run(
        "residual_train.deploy.recompose",
        f"maps={tmp_path / 'o'}",
        "strengths.noise=2.5",
        f"out={tmp_path / 'r2.npy'}",
    )
    assert r.returncode == 2 and "strengths.noise = 2.5 must be in [-1, 2]" in r.stderr
    assert not (tmp_path / "r2.npy").exists()
    # outside [0, 1] but inside the range: more noise than the camera's (-1), or less (2)
    for v in ("-1", "2"):
        r = run(
            "residual_train.deploy.recompose",
            f"maps={tmp_path / 'o'}",
            f"strengths.noise={v}",
            f"out={tmp_path / f'n{v}.npy'}",
        )
        assert r.returncode == 0, r.stderr
    more, less = np.load(tmp_path / "n-1.npy"), np.load(tmp_path / "n2.npy")
    clean = consistent(x, maps["blur"], maps["noise"], 1, 1, noise)
    kept = np.std(x + maps["blur"] - clean)  # the input's noise, at strength 0
    assert np.std(more - clean) > 1.5 * kept and 0.5 * kept < np.std(less - clean) < 1.5 * kept


@pytest.mark.parametrize("linearize, encoding", [("auto", "srgb"), ("false", "linear")])
def test_an_8_bit_photo_comes_back_unchanged_at_strengths_zero(
    exported, tmp_path, linearize, encoding
):
    """8-bit files are sRGB (linearize=auto): decoded to linear light for the network,
    encoded back in composed.png; linearize=false keeps the old reading (as linear)."""
    from data_gen.sources import linear_to_srgb, srgb_to_linear

    a8 = (np.random.default_rng(7).random((40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(a8).save(tmp_path / "photo.png")
    r = run(
        "residual_train.deploy",
        f"model={exported}",
        f"input={tmp_path / 'photo.png'}",
        f"out_dir={tmp_path / 'o'}",
        "strengths.blur=0",
        "strengths.noise=0",
        f"linearize={linearize}",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    x, _, meta = load_maps(tmp_path / "o")
    assert meta["input_encoding"] == encoding
    lin = srgb_to_linear(a8 / 255.0) if encoding == "srgb" else a8 / 255.0
    np.testing.assert_allclose(np.moveaxis(x, 0, 2), lin, atol=1e-6)
    out = np.asarray(Image.open(tmp_path / "o" / "composed.png"), np.int32)
    want = a8 if encoding == "srgb" else np.round(linear_to_srgb(a8 / 255.0) * 255)
    assert np.abs(out - want).max() <= 1


def test_deploy_bad_input(exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "model.onnx").write_text("not a model")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        load_model(broken)
    wrong = tmp_path / "wrong"
    shutil.copytree(exported, wrong)
    card = json.loads((wrong / "card.json").read_text())
    card["channels"] = 4
    (wrong / "card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="card says 4 channels, the ONNX model takes 3"):
        load_model(wrong)
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((20, 20, 5), np.float32))
    with pytest.raises(InputError, match="5 channels, expected 3"):
        read_input(tmp_path / "five.tif")
    m = load_model(exported)
    with pytest.raises(InputError, match="outside the model's training range"):
        m.noise_model(iso=10)
    r = run(
        "residual_train.deploy",
        f"model={exported}",
        f"input={tmp_path / 'five.tif'}",
        f"out_dir={tmp_path / 'o'}",
        "strengths.blur=2.2",
    )
    assert r.returncode == 2 and "strengths.blur = 2.2" in r.stderr


def test_raw_input_through_libraw():
    from tests.conftest import shared

    x = read_input(shared("raw", "tinydng_colorchart_Canon550D_MagicLantern.dng"))
    assert x.shape[0] == 3 and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    with pytest.raises(InputError, match="LibRaw cannot read"):
        bad = Path(shared("raw").parent / "psf" / "levin09_kernels.npz")
        tmp = Path("/tmp") / "not_raw.dng"
        tmp.write_bytes(bad.read_bytes()[:1000])
        read_input(tmp)


@pytest.mark.slow
def test_publish_logs_a_wandb_artifact_offline(exported, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "residual_train.release.publish",
            f"src={exported}",
            f"registry={tmp_path / 'reg'}",
            "name=dl",
            "version=2",
            "wandb=true",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "WANDB_MODE": "offline"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    run_id = json.loads(r.stdout.strip().splitlines()[-1])["wandb_run"]
    runs = list((tmp_path / "reg" / "dl").glob(f"wandb/offline-run-*-{run_id}"))
    assert len(runs) == 1
    log = (runs[0] / f"run-{run_id}.wandb").read_bytes()
    assert b"model.onnx" in log and b"residual-train-model/1" in log


@pytest.mark.slow
def test_sequential_mode_runs_the_blur_model_on_the_denoised_image(exported, tmp_path):
    ds = Path(json.loads((exported / "card.json").read_text())["training"]["data"]["dir"])
    models = {}
    for head in ("noise", "blur"):
        run_dir = tmp_path / head
        train(
            train_cfg(
                f"data.dir={ds}",
                f"run_dir={run_dir}",
                "model=single_head",
                f"model.heads=[{head}]",
                "model.width=8",
                "model.depth=2",
                "model.blocks=1",
                "trainer.max_epochs=1",
                "val.panel_every=0",
            )
        )
        export(run_dir / "checkpoints" / "last.ckpt", tmp_path / f"exp_{head}")
        models[head] = load_model(tmp_path / f"exp_{head}")
    from residual_train.deploy import predict_sequential

    x = np.random.default_rng(3).random((3, 40, 52), dtype=np.float32)
    maps = predict_sequential(models["noise"], models["blur"], x, tile=512)
    r_n = models["noise"].predict(x, tile=512)["noise"]
    np.testing.assert_allclose(maps["noise"], r_n, atol=0)
    np.testing.assert_allclose(
        maps["blur"], models["blur"].predict(x + r_n, tile=512)["blur"], atol=1e-6
    )
    assert not np.allclose(maps["blur"], models["blur"].predict(x, tile=512)["blur"])
    with pytest.raises(InputError, match="noise-only and a blur-only"):
        predict_sequential(models["blur"], models["noise"], x)
    args = [
        "residual_train.deploy",
        f"model={tmp_path / 'exp_noise'}",
        f"blur_model={tmp_path / 'exp_blur'}",
        f"input={tmp_path / 'in.tif'}",
        f"out_dir={tmp_path / 'o'}",
    ]
    r = run(*args)
    assert r.returncode == 2 and "in.tif" in r.stderr  # a missing input is named
    tifffile.imwrite(tmp_path / "in.tif", np.moveaxis(x, 0, 2), photometric="rgb")
    r = run(*args, "strengths.blur=0.5", "iso=800", "self_ensemble=true")
    assert r.returncode == 0, r.stderr[-2000:]
    _, maps, meta = load_maps(tmp_path / "o")
    assert sorted(maps) == ["blur", "noise"]
    # each model's own views (the test data's lens); the blur model's are recorded too
    for key, head in (("views", "noise"), ("blur_views", "blur")):
        views = load_model(tmp_path / f"exp_{head}", self_ensemble=True).views
        assert meta[key] == views and list(views) == [head] and views[head][0] == "identity"


# ---- device graphs ---------------------------------------------------------------------------
@pytest.mark.slow
def test_fp16_and_int8_exports_record_what_they_cost(exported, tmp_path):
    ckpt = Path(json.loads((exported / "card.json").read_text())["checkpoint"]["path"])
    fp32_bytes = (exported / "model.onnx").stat().st_size
    from data_gen.core.cli import compose_config
    from data_gen.core.paths import APPS
    from residual_train.evaluate.device import DeviceCheck
    from residual_train.release.export import run as run_export

    for precision, max_ratio, min_psnr in (("fp16", 0.7, 60.0), ("int8", 0.9, 25.0)):
        if precision == "fp16":  # as `python -m residual_train.release.export` builds it: the
            # config's device._target_ is what measures the reduced graph
            args = [f"ckpt={ckpt}", f"out_dir={tmp_path / precision}", "precision=fp16"]
            run_export(compose_config(APPS, "export", [*args, f"min_device_psnr={min_psnr}"]))
            card = json.loads((tmp_path / precision / "card.json").read_text())
        else:
            card = export(
                ckpt,
                tmp_path / precision,
                precision=precision,
                min_device_psnr=min_psnr,
                device=DeviceCheck(),
            )
        dev = card["device"]
        assert card["precision"] == dev["precision"] == precision
        size = (tmp_path / precision / "model.onnx").stat().st_size
        assert dev["bytes"] == size and dev["fp32_bytes"] == fp32_bytes
        assert size < max_ratio * fp32_bytes
        assert dev["ms_per_megapixel"] > 0 and dev["fp32_ms_per_megapixel"] > 0
        assert set(dev["psnr_vs_fp32"]) == {"100", "6400"}
        assert all(v >= min_psnr for v in dev["psnr_vs_fp32"].values())
        assert f"device graph: {precision}" in (tmp_path / precision / "card.md").read_text()
        # the reduced graph deploys like any export, and the registry takes it
        m = load_model(tmp_path / precision)
        x = np.random.default_rng(0).random((3, 40, 56), dtype=np.float32) * 0.5
        maps = m.predict(x, iso=800)
        assert np.isfinite(maps["blur"]).all() and maps["noise"].shape == x.shape
        Registry(tmp_path / "reg").publish(tmp_path / precision, "dev", precision)
    with pytest.raises(ExportError, match="precision = int8: the composed output is only"):
        export(
            ckpt, tmp_path / "strict", precision="int8", min_device_psnr=200, device=DeviceCheck()
        )
    assert not (tmp_path / "strict").exists() and not list(tmp_path.glob(".strict.tmp-*"))
    with pytest.raises(InputError, match="precision = 'int4'"):
        export(ckpt, tmp_path / "x", precision="int4")
    # the release stage measures nothing itself: a reduced graph without a device check is
    # refused before anything is written
    with pytest.raises(InputError, match="precision = fp16: .*device._target_"):
        export(ckpt, tmp_path / "y", precision="fp16")
    assert not (tmp_path / "y").exists()


def test_distortion_is_corrected_after_the_blur_in_deploy_and_recompose(exported, tmp_path):
    from data_gen.physics.distortion import correct_distortion

    img = (np.random.default_rng(2).random((60, 80, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", img, photometric="rgb")
    common = [
        f"model={exported}",
        f"input={tmp_path / 'in.tif'}",
        "iso=800",
        "tile=64",
        "overlap=32",
    ]
    r = run(
        "residual_train.deploy", *common, f"out_dir={tmp_path / 'o'}", "distortion=[-0.12,0.02]"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    x, maps, meta = load_maps(tmp_path / "o")
    assert meta["distortion"] == [-0.12, 0.02]
    noise = NoiseModel(meta["noise_A"], meta["noise_B"])
    plain = consistent(x, maps["blur"], maps["noise"], 1.0, 1.0, noise)
    want = correct_distortion(plain, (-0.12, 0.02), 3)
    got = np.moveaxis(tifffile.imread(tmp_path / "o" / "composed.tif"), 2, 0)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(got - plain).max() > 0.01  # the corners did move
    # recompose: as the deploy run (auto), none, or other coefficients
    for i, (dist, expect) in enumerate(
        [("auto", want), ("null", plain), ("[0.05]", correct_distortion(plain, (0.05,), 3))]
    ):
        out = tmp_path / f"r-{i}.npy"
        r = run(
            "residual_train.deploy.recompose",
            f"maps={tmp_path / 'o'}",
            f"distortion={dist}",
            f"out={out}",
        )
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(np.load(out), expect, atol=1e-6)
    for bad, why in (
        ("[-0.1,x]", "the coefficients must be numbers"),
        ("[-10]", "is not increasing over the frame"),  # folds the frame over itself
        ("[1000]", "moves points by up to"),  # no lens the polynomial describes
    ):
        r = run(
            "residual_train.deploy", *common, f"out_dir={tmp_path / 'bad'}", f"distortion={bad}"
        )
        assert r.returncode == 2 and why in r.stderr, (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()


def test_recompose_takes_one_strength_per_component_of_any_chain(tmp_path):
    from data_gen.chain import render_chain, residuals
    from data_gen.components import Chain
    from data_gen.physics.defocus import disc_kernel
    from data_gen.physics.fog import draw_fog
    from data_gen.physics.relight import draw_relight, gain_map
    from data_gen.sources import dead_leaves
    from residual_train.deploy import save_maps
    from residual_train.deploy.compose import compose

    rng = np.random.default_rng(0)
    scene, depth = dead_leaves(rng, size=40, supersample=2, depth=(1.0, 20.0))
    scene = (0.05 + 0.6 * scene).astype(np.float32)
    names = ["relight", "fog", "blur", "noise"]
    params = {
        "relight": {
            "gain": gain_map(
                (40, 40), **draw_relight(rng, (1, 3), (0.3, 1.0), (0.2, 1.5), (0.2, 0.6))
            )
        },
        "fog": draw_fog(rng, (0.05, 0.5), (0.6, 1.0), 0.05, 3),
        "blur": {"psf": disc_kernel(1.5)},
    }
    noise = NoiseModel(np.full(3, 2e-3, np.float32), np.full(3, 1e-5, np.float32))
    normal = rng.standard_normal(scene.shape).astype(np.float32)
    t = render_chain(scene, Chain.defaults(names), params, depth, noise, normal)
    maps = residuals(t, names)["peeling"]
    meta = {"components": names, "noise_A": noise.A.tolist(), "noise_B": noise.B.tolist()}
    save_maps(tmp_path / "m", t["input"], maps, meta)
    out = tmp_path / "y.npy"
    r = run(
        "residual_train.deploy.recompose",
        f"maps={tmp_path / 'm'}",
        "strengths.fog=0.7",
        "strengths.noise=0.2",
        f"out={out}",
    )
    assert r.returncode == 0, r.stderr
    s = {"relight": 1.0, "fog": 0.7, "blur": 1.0, "noise": 0.2}
    want = compose(t["input"], maps, s, noise)
    np.testing.assert_allclose(np.load(out), want, atol=1e-6)
    r = run(
        "residual_train.deploy.recompose",
        f"maps={tmp_path / 'm'}",
        "strengths.motion=0.5",
        f"out={tmp_path / 'z.npy'}",
    )
    assert r.returncode == 2 and "strengths.motion: these maps hold no such residual" in r.stderr


# ---- self-ensemble: the maps averaged over the flips the model was trained with ------------
def test_self_ensemble_averages_the_views_the_model_was_trained_with():
    """``default`` was trained with data.geometric = lens, and soft_prime (coma along x) is
    symmetric only top to bottom: its blur map averages two views, the second turned back
    before the mean; its noise (pixel-independent) has no direction: every flip and turn."""
    plain, ens = load_model("default"), load_model("default", self_ensemble=True)
    assert plain.views == {"blur": ["identity"], "noise": ["identity"]}
    assert ens.views["blur"] == ["identity", "flip-y"] and ens.transforms[:2] == (0, 6)
    assert sorted(ens.head_transforms["noise"]) == list(range(8)) == sorted(ens.transforms)
    x = np.random.default_rng(2).random((3, 60, 84), dtype=np.float32) * 0.6
    kw = dict(tile=64, overlap=16, iso=800)
    views = {t: plain.predict(np.ascontiguousarray(dihedral(x, t)), **kw) for t in range(8)}
    back = {t: {h: dihedral(m, INVERSE[t]) for h, m in v.items()} for t, v in views.items()}
    got = ens.predict(x, **kw)
    want = {
        "blur": (back[0]["blur"] + back[6]["blur"]) / 2,
        "noise": np.mean([back[t]["noise"] for t in range(8)], axis=0),
    }
    for h in want:
        assert got[h].dtype == np.float32 and got[h].shape == x.shape
        np.testing.assert_allclose(got[h], want[h], atol=1e-6)
        assert np.abs(got[h] - back[0][h]).max() > 1e-5  # the network is not exactly equivariant
    # a quarter-turned frame shows a blur the lens never makes: its blur map is far off
    err = {t: np.abs(back[t]["blur"] - back[0]["blur"]).mean() for t in (1, 6)}
    assert err[1] > 3 * err[6]
    # self_ensemble=trained: every map over the trained views only (two passes)
    trained = load_model("default", self_ensemble="trained")
    assert trained.views == {h: ["identity", "flip-y"] for h in ("blur", "noise")}
    assert trained.transforms == (0, 6)
    got = trained.predict(x, **kw)
    np.testing.assert_array_equal(got["blur"], ens.predict(x, **kw)["blur"])
    np.testing.assert_allclose(got["noise"], (back[0]["noise"] + back[6]["noise"]) / 2, atol=1e-6)
    with pytest.raises(InputError, match="self_ensemble = 'all': one of false, trained, true"):
        load_model("default", self_ensemble="all")


def test_ensemble_maps_averages_each_head_over_its_own_views():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)

    def predict(v, index):  # a 'network' that is not equivariant: it adds the view's row 0
        return {"a": v + v[:, :1], "b": v * 2 + v[:, :1]}

    got = ensemble_maps(predict, x, (0, 6, 1), heads={"a": (0, 6)})
    for h, t_all in (("a", (0, 6)), ("b", (0, 6, 1))):
        want = [dihedral(predict(np.ascontiguousarray(dihedral(x, t)), None)[h], INVERSE[t])
                for t in t_all]  # fmt: skip
        np.testing.assert_allclose(got[h], np.mean(want, axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="not a subset"):
        ensemble_maps(predict, x, (0, 6), heads={"a": (0, 1)})


def test_noise_kinds_with_rows_or_a_fixed_pattern_keep_the_trained_views():
    from data_gen.components import component_class
    from data_gen.noise_kinds import KINDS

    noise, blur = component_class("noise"), component_class("blur")
    assert noise.orientation_free(KINDS["poisson_gaussian"])
    assert not noise.orientation_free(KINDS["physical"])
    assert not noise.orientation_free(KINDS["dark_frames"])
    assert not blur.orientation_free(KINDS["poisson_gaussian"])


@pytest.mark.parametrize(
    "data, views",
    [
        ({"augment": True, "geometric": "all"}, 8),
        ({"augment": True, "geometric": "none"}, 1),
        ({"augment": False, "geometric": "all"}, 1),  # trained without augmentation
        ({"augment": False, "geometric": None}, 1),  # ... whatever geometric says
        (None, "training.data.geometric"),  # the card does not say: refused in one line
    ],
)
def test_self_ensemble_takes_the_views_the_card_records(exported, tmp_path, data, views):
    d = tmp_path / "m"
    shutil.copytree(exported, d)
    card = json.loads((d / "card.json").read_text())
    if data is None:
        del card["training"]["data"]
    else:
        card["training"]["data"].update(data)
    (d / "card.json").write_text(json.dumps(card))
    if isinstance(views, str):
        with pytest.raises(InputError, match=f"self_ensemble = true: .*{views}"):
            load_model(d, self_ensemble=True)
        return
    m = load_model(d, self_ensemble=True)
    assert len(m.views["blur"]) == views and m.views["blur"][0] == "identity"
    assert len(m.views["noise"]) == 8 == len(m.transforms)  # noise: every flip and turn
    x = np.random.default_rng(3).random((3, 40, 56), dtype=np.float32)
    got, plain = m.predict(x, tile=48, overlap=16), load_model(d).predict(x, tile=48, overlap=16)
    if views == 1:  # the identity alone: the plain prediction, bit for bit
        np.testing.assert_array_equal(got["blur"], plain["blur"])
    for h in plain:  # quarter turns of a non-square frame come back to its shape
        assert got[h].shape == x.shape
        assert (views == 1 and h == "blur") or not np.array_equal(got[h], plain[h])


def test_cli_deploy_with_self_ensemble_records_its_views(exported, tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", np.full((40, 56, 3), 0.3, np.float32), photometric="rgb")
    common = [f"model={exported}", f"input={tmp_path / 'in.tif'}", "tile=48", "overlap=16"]
    r = run("residual_train.deploy", *common, f"out_dir={tmp_path / 'o'}", "self_ensemble=true")
    assert r.returncode == 0, r.stderr[-2000:]
    views = json.loads(r.stdout.strip().splitlines()[-1])["views"]
    geometric = json.loads((exported / "card.json").read_text())["training"]["data"]["geometric"]
    assert views["blur"][0] == "identity" and (len(views["blur"]) == 8) == (geometric == "all")
    assert len(views["noise"]) == 8
    assert load_maps(tmp_path / "o")[2]["views"] == views
    r = run("residual_train.deploy", *common, f"out_dir={tmp_path / 'p'}", "self_ensemble=maybe")
    one_line_error(r, 2, "self_ensemble = 'maybe': one of false, trained, true")
    assert not (tmp_path / "p").exists()
