"""More components end to end: schema-v2 shards (python -m data_gen components=[...]),
targets and parameters per component, N heads in training, export, deploy, recompose."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
import yaml

from data_gen.chain import before, stored_names, stored_residuals
from data_gen.core.errors import InputError
from data_gen.generate import config_hash, generate, generation_config
from data_gen.noise import NoiseModel
from data_gen.physics.relight import gain_map
from data_gen.shards import verify
from residual_train.data import ResidualDataModule, batch_arrays
from residual_train.deploy import load_maps, read_input
from residual_train.deploy.compose import Strengths, compose
from residual_train.release.export import export
from residual_train.training.lit import ResidualModule
from residual_train.training.train import train
from tests.conftest import compose_cfg
from tests.helpers.cli import run_module as run
from tests.helpers.training import train_cfg

FOUR = "components=[relight,fog,blur,noise]"
DEPTH = "+source.depth=[1,20]"


def four(out: Path, *extra: str) -> dict:
    return compose_cfg(f"out_dir={out}", FOUR, DEPTH, "samples_per_shard=16", *extra)


@pytest.fixture(scope="module")
def v2(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("v2") / "ds"
    generate(four(d, "patch_size=24", "source.size=96", "sensor.iso=[6400]"))
    return d


def test_schema_v2_shards_hold_every_target_and_parameter(v2):
    assert verify(v2) == ([], 48)
    manifest = json.loads((v2 / "manifest.json").read_text())
    assert manifest["schema_version"] == 2
    assert manifest["components"] == ["relight", "fog", "blur", "noise"]
    with h5py.File(v2 / manifest["shards"][0]["name"]) as f:
        assert int(f.attrs["schema_version"]) == 2
        assert list(f.attrs["components"]) == ["relight", "fog", "blur", "noise"]
        names = stored_names(["relight", "fog", "blur", "noise"])
        assert set(names) == {
            "input",
            "clean",
            "without_relight",
            "without_fog",
            "without_blur",
            "without_noise",
            "before_fog",
            "before_blur",
        }
        a = {k: f[k][:] for k in names}
        meta, margin = f["meta"][:], int(f.attrs["margin"])
    for key in ("relight_ambient", "relight_lights", "fog_beta", "fog_airlight"):
        assert key in meta.dtype.names
    assert (meta["fog_beta"] >= 0.02).all() and (meta["fog_beta"] <= 0.1).all()
    ok = (a["input"] < 1) & (a["without_relight"] < 1) & (a["before_fog"] < 1)
    for i in range(len(meta)):
        m = meta[i]
        # the relight gain from the stored parameters, over this patch of its frame
        g = gain_map(
            (24, 24),
            float(m["relight_ambient"]),
            m["relight_lights"],
            (96, 96),
            (int(m["y"]), int(m["x"])),
        )
        want = a["clean"][i] * g[None]
        np.testing.assert_allclose(a["before_fog"][i][ok[i]], want[ok[i]], rtol=2e-6, atol=1e-7)
    assert margin >= 7 // 2  # the lens's support
    # identities, unclipped pixels: input + R_c = without_c; peeling residuals telescope
    loo = stored_residuals(a, ["relight", "fog", "blur", "noise"], "leave_one_out")
    peel = stored_residuals(a, ["relight", "fog", "blur", "noise"], "peeling")
    for c, r in loo.items():
        np.testing.assert_allclose((a["input"] + r)[ok], a[f"without_{c}"][ok], atol=1e-6)
    np.testing.assert_allclose((a["input"] + sum(peel.values()))[ok], a["clean"][ok], atol=2e-6)
    # the last component's two targets agree; the noise residual is σ(signal)·r
    np.testing.assert_array_equal(loo["noise"], peel["noise"])
    assert np.abs(loo["fog"] - peel["fog"]).max() > 1e-3  # fog does not commute with blur
    assert before(a, ["relight", "fog", "blur", "noise"], "noise") is a["without_noise"]


def test_same_config_same_bytes_and_the_default_keeps_its_hash(v2, tmp_path):
    again = tmp_path / "again"
    generate(four(again, "patch_size=24", "source.size=96", "sensor.iso=[6400]"))
    m1 = json.loads((v2 / "manifest.json").read_text())
    m2 = json.loads((again / "manifest.json").read_text())
    assert [s["sha256"] for s in m1["shards"]] == [s["sha256"] for s in m2["shards"]]
    # [blur, noise]: component settings do not count (schema v1's bytes and hash)
    base = compose_cfg("out_dir=x")
    assert "components" not in generation_config(base)
    assert "component" not in generation_config(base)
    tweaked = compose_cfg("out_dir=x", "component.fog.beta=[0.1,0.2]")
    assert config_hash(generation_config(tweaked)) == config_hash(generation_config(base))
    # with fog listed, its settings count, and those of unlisted components do not
    f1 = compose_cfg("out_dir=x", "components=[fog,noise]", DEPTH)
    f2 = compose_cfg("out_dir=x", "components=[fog,noise]", DEPTH, "component.fog.beta=[0.1,0.2]")
    f3 = compose_cfg("out_dir=x", "components=[fog,noise]", DEPTH, "component.motion.length=[1,2]")
    h = [config_hash(generation_config(c)) for c in (f1, f2, f3)]
    assert h[0] != h[1] and h[0] == h[2]


def test_motion_and_defocus_render_with_their_parameters(tmp_path):
    d = tmp_path / "ds"
    generate(
        compose_cfg(
            f"out_dir={d}",
            "components=[defocus,blur,motion,noise]",
            DEPTH,
            "shards=1",
            "samples_per_shard=6",
            "source.size=96",
            "component.motion.length=[3,6]",
            "component.defocus.max_radius_px=3",
        )
    )
    with h5py.File(next(d.glob("*.h5"))) as f:
        meta = f["meta"][:]
        moved = f["without_noise"][:] - f["before_motion"][:]  # what the shake did
    k = meta["motion_kernel"]
    assert (k >= 0).all()
    np.testing.assert_allclose(k.sum(axis=(1, 2)), 1, atol=1e-5)
    assert ((meta["motion_length"] >= 3) & (meta["motion_length"] <= 6)).all()
    assert (meta["defocus_f_number"] >= 2).all() and np.isfinite(meta["defocus_focus_m"]).all()
    assert np.abs(moved).max() > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["components=[blur,haze]"], "unknown component 'haze'"),
        (["components=[blur,blur,noise]"], "'blur' is listed twice"),
        (["components=[noise,blur]"], "out of physical order"),
        (
            [FOUR, DEPTH, "component.fog.beta=[-0.1,0.1]"],
            "component.fog.beta = [-0.1, 0.1]: β > 0",
        ),
        (
            [FOUR, DEPTH, "component.relight.ambient=[0,1]"],
            "component.relight.ambient = [0.0, 1.0]: the gain must be > 0",
        ),
        (
            [FOUR, DEPTH, "component.fog.beta=[0.2,0.1]"],
            "component.fog.beta = [0.2, 0.1]: need min <= max",
        ),
        ([FOUR, DEPTH, "+component.fog.bta=[0.1,0.2]"], "component.fog.bta: unknown setting"),
        ([FOUR, DEPTH, "component.fog.tint=true"], "component.fog.tint = True"),
        (
            [FOUR, DEPTH, "component.defocus.layers=2.5", "components=[defocus,noise]"],
            "component.defocus.layers = 2.5: Input should be a valid integer",
        ),
        (["components=[]"], "components = []: list at least one component"),
        ([FOUR], "component fog needs a depth map: dead-leaves frames have no depth map"),
        (
            ["components=[motion,noise]", "component.motion.source=file"],
            "give component.motion.kernels",
        ),
    ],
)
def test_bad_component_input_stops_before_anything_is_written(tmp_path, overrides, message):
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        generate(compose_cfg(f"out_dir={out}", *overrides))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (np.ones((10, 10), np.float32), "10x10 px, the image is 80x72"),
        (np.full((72, 80), np.nan, np.float32), "holds NaN"),
        (-np.ones((72, 80), np.float32), "holds negative depths"),
    ],
)
def test_a_bad_depth_map_is_refused_naming_it_before_writing(tmp_path, depth, message):
    from PIL import Image

    img, dep = tmp_path / "img", tmp_path / "depth"
    img.mkdir()
    dep.mkdir()
    rgb = (np.random.default_rng(0).random((72, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(img / "a.png")
    np.save(dep / "a.npy", depth)
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        generate(
            compose_cfg(
                f"out_dir={out}",
                "source=folder",
                f"source.path={img}",
                f"+source.depth.path={dep}",
                "components=[fog,noise]",
            )
        )
    assert message in str(e.value) and str(dep / "a.npy") in str(e.value)
    assert not out.exists()


def test_batches_and_heads_follow_the_datasets_components(v2):
    dm = ResidualDataModule(str(v2), batch_size=4, val_shards=1, verify="size")
    assert dm.components == ("relight", "fog", "blur", "noise")
    item = dm.dataset(train=False)[(0, 0)]
    for c in dm.components:
        assert item[f"R_{c}"].shape == (3, 24, 24)
    with h5py.File(v2 / dm.val_shards[0].name) as f:
        a = {k: f[k][0] for k in stored_names(dm.components)}
    want = batch_arrays(a, dm.components)
    torch.testing.assert_close(item["R_fog"], torch.from_numpy(want["R_fog"]))
    torch.testing.assert_close(item["signal"], torch.from_numpy(a["without_noise"]))
    # rendered on the fly with the dataset's own generation config: the same components
    fly = ResidualDataModule(
        str(v2), batch_size=4, onthefly={"enabled": True, "samples_per_epoch": 8}
    )
    b = fly.render_batch(0, torch.device("cpu"))
    for c in dm.components:
        assert b[f"R_{c}"].shape == (4, 3, 24, 24)
    total = b["x"] + sum(b[f"R_{c}"] for c in dm.components)  # peeling targets telescope
    ok = (b["x"] < 1) & (b["clean"] < 1)
    torch.testing.assert_close(total[ok], b["clean"][ok], atol=2e-6, rtol=0)
    assert (b["meta"]["fog_beta"] > 0).all() and (b["meta"]["relight_ambient"] > 0).all()
    again = fly.render_batch(0, torch.device("cpu"))  # a batch is a function of (seed, k)
    torch.testing.assert_close(again["x"], b["x"], atol=0, rtol=0)


@pytest.mark.slow
def test_four_components_train_export_deploy_and_recompose(v2, tmp_path):
    cfg = train_cfg(
        f"data.dir={v2}",
        f"run_dir={tmp_path / 'run'}",
        "trainer.max_epochs=10",
        "model.width=16",
        "val.panel_every=0",
        "data.crop=24",
        "optim.lr=2e-3",
        "data.augment=false",
    )
    result = train(cfg)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["heads"] == ["relight", "fog", "blur", "noise"]
    # every head's loss on the training data is lower than at the start (heads start at 0)
    dm = ResidualDataModule(str(v2), batch_size=32, val_shards=1, verify="size", augment=False)
    batch = next(iter(dm.train_dataloader()))
    ck = torch.load(result["best"] or tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    trained = ResidualModule(**ck["hyper_parameters"])
    trained.load_state_dict(ck["state_dict"])
    fresh = ResidualModule(**ck["hyper_parameters"])
    with torch.no_grad():
        before_l, after_l = fresh.losses(batch), trained.eval().losses(batch)
    for h in ("relight", "fog", "blur", "noise"):
        assert after_l[h] < before_l[h], (h, float(after_l[h]), float(before_l[h]))
    # export: one output per component
    card = export(tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "exp")
    assert card["components"] == ["relight", "fog", "blur", "noise"]
    assert card["outputs"] == ["R_relight", "R_fog", "R_blur", "R_noise"]
    # deploy: four maps, composed in physical order at the given strengths
    rng = np.random.default_rng(3)
    img = (rng.random((40, 52, 3)) * 0.5 * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", img, photometric="rgb")
    r = run(
        "residual_train.deploy",
        f"model={tmp_path / 'exp'}",
        f"input={tmp_path / 'in.tif'}",
        f"out_dir={tmp_path / 'o'}",
        "strengths.fog=0.5",
        "strengths.relight=0",
        "tile=32",
        "overlap=16",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    x, maps, meta = load_maps(tmp_path / "o")
    assert sorted(maps) == ["blur", "fog", "noise", "relight"]
    np.testing.assert_allclose(x, read_input(tmp_path / "in.tif"), atol=1e-7)
    noise = NoiseModel(meta["noise_A"], meta["noise_B"])
    order = ("relight", "fog", "blur", "noise")
    want = compose(x, maps, {"fog": 0.5, "relight": 0}, noise)
    got = np.moveaxis(tifffile.imread(tmp_path / "o" / "composed.tif"), 2, 0)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # recompose: all strengths 0 gives the input exactly; one strength changes its share
    zero = [f"strengths.{c}=0" for c in order]
    r = run(
        "residual_train.deploy.recompose",
        f"maps={tmp_path / 'o'}",
        *zero,
        f"out={tmp_path / 'z.npy'}",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), x)
    r = run(
        "residual_train.deploy.recompose",
        f"maps={tmp_path / 'o'}",
        "strengths.motion=0.5",
        f"out={tmp_path / 'm.npy'}",
    )
    assert r.returncode == 2 and "strengths.motion" in r.stderr and "no such residual" in r.stderr


def test_a_strength_for_a_component_the_model_lacks_is_refused():
    x = np.full((3, 4, 4), 0.3, np.float32)
    maps = {"fog": np.full_like(x, -0.1), "noise": np.zeros_like(x)}
    noise = NoiseModel(np.full(3, 1e-3, np.float32), np.full(3, 1e-6, np.float32))
    s = Strengths.resolve({"fog": 0.5}, maps)
    np.testing.assert_allclose(compose(x, maps, s, noise), x - 0.05, atol=1e-7)
    assert s.as_dict() == {"fog": 0.5, "noise": 1.0}
    with pytest.raises(InputError, match="strengths.blur: these maps hold no such residual"):
        compose(x, maps, {"blur": 1.0}, noise)


def test_preview_shows_each_components_residual(v2):
    from data_gen.preview import contact_sheet

    sheet = contact_sheet(v2, n=2, scale=1)
    assert sheet.size == (110 + 6 * (24 + 4), 18 + 2 * (24 + 4))  # clean, input, 4 residuals


def test_more_components_render_for_a_bayer_sensor_and_on_the_torch_renderer(tmp_path):
    """layout = rggb with relight, fog and defocus: every stored array packed (4, P/2, P/2),
    the peeling targets telescope; renderer = torch writes the same samples to float32
    rounding."""
    base = [FOUR.replace("relight,fog", "relight,fog,defocus"), DEPTH, "samples_per_shard=8"]
    base += ["shards=1", "patch_size=24", "source.size=96"]
    generate(compose_cfg(f"out_dir={tmp_path / 'bayer'}", *base, "layout=rggb"))
    with h5py.File(tmp_path / "bayer" / "shard-00000-of-00001.h5") as f:
        comps = [c.decode() if isinstance(c, bytes) else c for c in f.attrs["components"]]
        arrays = {k: f[k][:] for k in stored_names(comps)}
        assert f.attrs["layout"] == "rggb" and arrays["input"].shape == (8, 4, 12, 12)
    res = stored_residuals(arrays, comps)
    ok = (arrays["input"] < 1) & (arrays["clean"] < 1)
    np.testing.assert_allclose(
        (arrays["input"] + sum(res.values()))[ok], arrays["clean"][ok], atol=2e-6
    )
    generate(compose_cfg(f"out_dir={tmp_path / 'np'}", *base))
    generate(compose_cfg(f"out_dir={tmp_path / 'torch'}", *base, "renderer=torch"))
    with h5py.File(tmp_path / "np" / "shard-00000-of-00001.h5") as a:
        with h5py.File(tmp_path / "torch" / "shard-00000-of-00001.h5") as b:
            for k in stored_names(comps):
                assert np.abs(a[k][:] - b[k][:]).max() <= 2e-6, k
            np.testing.assert_array_equal(a["meta"]["fog_beta"], b["meta"]["fog_beta"])


@pytest.mark.parametrize("kind", ["pickled", "corrupt", "not an npz"])
def test_a_bad_motion_kernel_file_is_named_in_one_line(tmp_path, kind):
    bad = tmp_path / "k.npz"
    if kind == "pickled":
        np.savez(bad, k1=np.array([{"a": 1}], dtype=object))
    elif kind == "corrupt":
        bad.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        np.save(tmp_path / "k.npy", np.ones((3, 3)))
        bad = tmp_path / "k.npy"
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        generate(
            compose_cfg(
                f"out_dir={out}",
                "components=[motion,noise]",
                "component.motion.source=file",
                f"component.motion.kernels={bad}",
            )
        )
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()
