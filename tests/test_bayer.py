"""Bayer CFA: mosaic / pack / unpack, RAW files through LibRaw, sensor-faithful rendering."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from data_gen.cfa import PATTERNS, mosaic, mosaic_packed, pack, plane_offsets, unpack
from data_gen.core.errors import InputError
from data_gen.generate import generate
from data_gen.raw import read_raw
from data_gen.sources import RawSource
from tests.conftest import compose_cfg, shared

DNG = ("raw", "tinydng_colorchart_Canon550D_MagicLantern.dng")
KDC = ("raw", "RAW_KODAK_DC50.KDC")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_mosaic_pack_unpack_round_trip_exactly(pattern):
    rng = np.random.default_rng(3)
    m = rng.random((2, 6, 8), dtype=np.float32)
    np.testing.assert_array_equal(unpack(pack(m, pattern), pattern), m)
    p = rng.random((3, 4, 3, 5), dtype=np.float32)
    np.testing.assert_array_equal(pack(unpack(p, pattern), pattern), p)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_each_cfa_pattern_is_honoured(pattern):
    # channel c filled with c + 1: a photosite's value names its colour
    rgb = np.stack([np.full((4, 6), c + 1.0, np.float32) for c in range(3)])
    m = mosaic(rgb, pattern)
    colour = {1.0: "R", 2.0: "G", 3.0: "B"}
    for y in range(4):
        for x in range(6):
            assert colour[m[y, x]] == pattern[(y % 2) * 2 + x % 2]
    packed = pack(m, pattern)
    assert packed[:, 0, 0].tolist() == [1.0, 2.0, 2.0, 3.0]  # always R, Gr, Gb, B
    # Gr shares the red row, Gb the blue row
    (ry, _), (gry, _), (gby, _), (by, _) = plane_offsets(pattern)
    assert gry == ry and gby == by and ry != by
    rnd = np.random.default_rng(0).random((2, 3, 4, 6), dtype=np.float32)
    np.testing.assert_array_equal(mosaic_packed(rnd, pattern), pack(mosaic(rnd, pattern), pattern))


def test_bad_cfa_input():
    with pytest.raises(InputError, match="cfa = 'RGBG'"):
        plane_offsets("RGBG")
    with pytest.raises(InputError, match="even height and width, got 5x6"):
        pack(np.zeros((5, 6)), "RGGB")


def test_real_dng_levels_and_pattern():
    r = read_raw(shared(*DNG))
    assert r.pattern == "RGGB" and r.white == 15000
    assert r.black.tolist() == [2056] * 4
    assert r.mosaic.dtype == np.uint16 and r.mosaic.shape[0] % 2 == 0
    p = r.packed()
    assert p.shape == (4, r.mosaic.shape[0] // 2, r.mosaic.shape[1] // 2)
    # normalised: the raw DN of a photosite maps to (DN - black) / (white - black)
    assert p[0, 10, 20] == pytest.approx((float(r.mosaic[20, 40]) - 2056) / (15000 - 2056))
    k = read_raw(shared(*KDC))
    assert k.pattern == "GRBG" and k.white == 16383 and k.black.tolist() == [0] * 4
    # GRBG: the red photosite is at (0, 1)
    assert k.packed()[0, 0, 0] == pytest.approx(float(k.mosaic[0, 1]) / 16383)


def test_unreadable_raw_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.dng"
    bad.write_bytes(b"this is not a raw file" * 100)
    with pytest.raises(InputError, match=r"broken.dng cannot be read by LibRaw"):
        read_raw(bad)
    with pytest.raises(InputError, match="does not exist"):
        read_raw(tmp_path / "missing.dng")
    src = RawSource(str(tmp_path))
    with pytest.raises(InputError, match="cannot be read by LibRaw"):
        src.validate(32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no RAW files"):
        RawSource(str(tmp_path / "empty"))


def test_bayer_output_is_the_mosaic_of_the_rgb_render(tmp_path):
    rgb = compose_cfg(f"out_dir={tmp_path / 'rgb'}", "shards=1")
    bay = compose_cfg(f"out_dir={tmp_path / 'bayer'}", "shards=1", "layout=rggb", "cfa=GBRG")
    generate(rgb)
    generate(bay)
    name = "shard-00000-of-00001.h5"
    with (
        h5py.File(tmp_path / "rgb" / name, "r") as a,
        h5py.File(tmp_path / "bayer" / name, "r") as b,
    ):
        assert b.attrs["layout"] == "rggb" and b.attrs["cfa"] == "GBRG" and b.attrs["channels"] == 4
        assert b["clean"].shape == (12, 4, 8, 8)
        for k in ("clean", "blur"):  # blurred per colour at full resolution, then mosaicked
            np.testing.assert_array_equal(b[k][()], mosaic_packed(a[k][()], "GBRG"))
        # one noise draw per photosite, shared by the noisy pair; variance of its colour
        n1 = b["noise"][()] - b["clean"][()]
        n2 = b["noise_blur"][()] - b["blur"][()]
        ok = (b["noise"][()] < 1) & (b["noise_blur"][()] < 1)
        np.testing.assert_allclose(n1[ok], n2[ok], atol=1e-6)
        ma, mb = a["meta"][:], b["meta"][:]
        np.testing.assert_array_equal(mb["k1"], ma["k1"][:, [0, 1, 1, 2]])
        assert (mb["iso"] == ma["iso"]).all() and (mb["psf_index"] == ma["psf_index"]).all()
    m = json.loads((tmp_path / "bayer" / "manifest.json").read_text())
    assert (m["layout"], m["cfa"], m["channels"], m["patch_size"]) == ("rggb", "GBRG", 4, 8)


def test_noise_per_photosite_follows_its_colour():
    from data_gen.components import V1, Chain
    from data_gen.render import SampleSpec
    from data_gen.render_chain import SampleRenderer
    from data_gen.sensor import NoiseParams
    from data_gen.sources import Frame

    p, k = 64, 1
    frame = Frame("flat", np.full((3, p, p), 0.25, np.float32))
    a = np.array([1e-3, 4e-3, 16e-3], np.float32)
    z = np.zeros(3, np.float32)
    noise = NoiseParams(100.0, a, z, z, z, 0.0, 1.0)
    specs = [
        SampleSpec(frame, 0, 0, 1.0, noise, 0, 0.0, 0.0, i, np.random.default_rng(i))
        for i in range(64)
    ]
    psfs = np.ones((1, 3, k, k), np.float32)
    out = SampleRenderer(Chain.defaults(V1), psfs, p, 0, "BGGR")(specs)[0]
    var = (out["noise"] - out["clean"]).var(axis=(0, 2, 3))
    np.testing.assert_allclose(var, 0.25 * a[[0, 1, 1, 2]], rtol=0.05)


def test_raw_originals_feed_a_bayer_dataset(tmp_path):
    src = tmp_path / "raws"
    src.mkdir()
    shutil.copy(shared(*DNG), src)
    shutil.copy(shared(*KDC), src)
    cfg = compose_cfg(
        f"out_dir={tmp_path / 'ds'}", "source=raw", f"source.path={src}", "source.shrink=2",
        "layout=rggb",
    )  # fmt: skip
    generate(cfg)
    with h5py.File(tmp_path / "ds" / "shard-00000-of-00003.h5", "r") as f:
        names = {s.decode() if isinstance(s, bytes) else s for s in f["meta"]["source"]}
        assert names <= {DNG[1], KDC[1]}
        clean = f["clean"][()]
    assert clean.shape[1] == 4 and np.isfinite(clean).all() and clean.max() > 0.05


def test_a_bayer_dataset_trains(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from residual_train.data import ResidualDataModule
    from residual_train.training.train import train
    from tests.conftest import CONF

    d = tmp_path / "ds"
    generate(
        compose_cfg(
            f"out_dir={d}", "layout=rggb", "shards=4", "samples_per_shard=16", "patch_size=32",
            "source.size=96", "patches_per_source=8",
        )
    )  # fmt: skip
    dm = ResidualDataModule(str(d), crop=12, val_shards=1)
    a = dm.dataset(True)[(0, 5)]
    b = dm.dataset(True)[(0, 6)]
    assert a["x"].shape == (4, 12, 12)
    # packed planes are cropped, never flipped or rotated (that would change the CFA phase)
    full = dm.dataset(False)
    assert full.transforms == (0,) and dm.dataset(True).transforms == (0,)
    with pytest.raises(InputError, match="packed Bayer planes"):
        ResidualDataModule(str(d), crop=12, val_shards=1, geometric="all")
    for item in (a, b):
        assert item["a"].shape == (4,)
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(
            "train",
            overrides=[
                "experiment=tiny", f"data.dir={d}", f"run_dir={tmp_path / 'run'}",
                "trainer.max_epochs=2", "model.width=8", "val.panel_every=1",
            ],
        )  # fmt: skip
    res = train(OmegaConf.to_container(cfg, resolve=True))
    assert res["global_step"] > 0 and np.isfinite(res["value"])
    assert any((tmp_path / "run" / "panels").iterdir())
    # export and deploy on a real RAW file: its mosaic packed to the model's planes
    from data_gen.core.paths import APPS
    from residual_train.deploy.__main__ import run as deploy_run
    from residual_train.release.export import export

    def deploy_main(overrides: list[str]) -> None:
        with initialize_config_dir(config_dir=str(APPS), version_base=None):
            deploy_run(OmegaConf.to_container(compose("deploy", overrides=overrides), resolve=True))

    best = res["best"]
    card = export(best, tmp_path / "export")
    assert card["layout"] == "rggb" and card["channels"] == 4 and card["cfa"] == "RGGB"
    assert len(card["noise_model"]["a"][0]) == 4
    raw = read_raw(shared(*DNG))
    out = tmp_path / "deploy"
    args = [f"model={tmp_path / 'export'}", f"input={shared(*DNG)}", f"out_dir={out}", "tile=128"]
    deploy_main([*args, "strengths.blur=0", "strengths.noise=0"])
    import tifffile

    y = tifffile.imread(out / "composed.tif")
    np.testing.assert_array_equal(y, raw.packed())  # a = b = 0 gives the input back
    deploy_main([*args[:2], f"out_dir={tmp_path / 'd2'}", "tile=128"])
    y1 = tifffile.imread(tmp_path / "d2" / "composed.tif")
    assert y1.shape == raw.packed().shape and not np.array_equal(y1, y)
    png = tmp_path / "p.png"
    png.write_bytes((out / "composed.png").read_bytes())
    with pytest.raises(InputError, match="takes packed Bayer data"):
        deploy_main([f"model={tmp_path / 'export'}", f"input={png}", f"out_dir={tmp_path / 'd3'}"])
