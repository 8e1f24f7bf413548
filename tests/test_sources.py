"""Originals: image decoding, sRGB linearisation, shrinking, dead leaves."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from data_gen.core.errors import InputError
from data_gen.sources import (
    DeadLeavesSource,
    FolderSource,
    dead_leaves,
    linear_to_srgb,
    read_image,
    shrink,
    srgb_to_linear,
)
from tests.conftest import shared


def test_srgb_round_trip_and_known_values():
    v = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(v)), v, atol=2e-6)
    assert srgb_to_linear(np.float32(0.5)) == pytest.approx(0.21404, abs=1e-5)
    assert srgb_to_linear(np.float32(0.04)) == pytest.approx(0.04 / 12.92, rel=1e-6)


def test_8_and_16_bit_png_tiff_jpeg_decode_to_unit_range(tmp_path):
    rng = np.random.default_rng(0)
    a8 = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    a16 = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    Image.fromarray(a8).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", a16)
    smooth = np.broadcast_to(np.linspace(20, 230, 30, dtype=np.uint8)[None, :, None], (20, 30, 3))
    Image.fromarray(np.ascontiguousarray(smooth)).save(tmp_path / "c.jpg", quality=95)
    g16 = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g.png")
    np.testing.assert_allclose(
        read_image(tmp_path / "a.png"), np.moveaxis(a8, 2, 0) / 255.0, atol=1e-7
    )
    np.testing.assert_allclose(
        read_image(tmp_path / "b.tif"), np.moveaxis(a16, 2, 0) / 65535.0, atol=1e-7
    )
    assert np.abs(read_image(tmp_path / "c.jpg") - np.moveaxis(smooth, 2, 0) / 255.0).max() < 0.03
    g = read_image(tmp_path / "g.png")
    assert g.shape == (3, 20, 30)
    np.testing.assert_allclose(g[1], g16 / 65535.0, atol=1e-7)
    lin = read_image(tmp_path / "a.png", linearize=True)
    np.testing.assert_allclose(lin, srgb_to_linear(np.moveaxis(a8, 2, 0) / 255.0), atol=1e-6)


def test_linearize_auto_decodes_8_bit_files_only(tmp_path):
    from data_gen.sources import read_image_encoded

    a8 = (np.random.default_rng(2).random((6, 7, 3)) * 255).astype(np.uint8)
    a16 = (np.random.default_rng(3).random((6, 7, 3)) * 65535).astype(np.uint16)
    Image.fromarray(a8).save(tmp_path / "a.png")
    Image.fromarray(a8).save(tmp_path / "a.jpg", quality=100)
    tifffile.imwrite(tmp_path / "b.tif", a16, photometric="rgb")
    tifffile.imwrite(tmp_path / "f.tif", a16.astype(np.float32) / 65535, photometric="rgb")
    x, enc = read_image_encoded(tmp_path / "a.png", "auto")
    assert enc == "srgb"
    np.testing.assert_allclose(x, srgb_to_linear(np.moveaxis(a8, 2, 0) / 255.0), atol=1e-6)
    assert read_image_encoded(tmp_path / "a.jpg", "auto")[1] == "srgb"
    for f in ("b.tif", "f.tif"):
        x, enc = read_image_encoded(tmp_path / f, "auto")
        assert enc == "linear"
        np.testing.assert_allclose(x, np.moveaxis(a16, 2, 0) / 65535.0, atol=1e-6)
    assert read_image_encoded(tmp_path / "b.tif", True)[1] == "srgb"
    assert read_image_encoded(tmp_path / "a.png", False)[1] == "linear"
    with pytest.raises(InputError, match="linearize = 'maybe': auto"):
        read_image_encoded(tmp_path / "a.png", "maybe")


def test_float_tiff_is_taken_as_linear(tmp_path):
    a = np.random.default_rng(1).random((3, 8, 8)).astype(np.float32) * 2
    tifffile.imwrite(tmp_path / "f.tif", np.moveaxis(a, 0, 2), photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif", linearize=True), a)


def test_corrupt_image_error_names_the_file(tmp_path):
    good = tmp_path / "ok.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(good)
    (tmp_path / "trunc.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(InputError, match="trunc.png"):
        read_image(tmp_path / "trunc.png")


def test_shrink_integer_factor_is_exact_block_mean():
    img = np.arange(2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8)
    out = shrink(img, 2)
    assert out.shape == (2, 3, 4)
    assert out[1, 0, 0] == pytest.approx(img[1, :2, :2].mean())
    frac = shrink(np.ones((3, 30, 30), np.float32), 1.5)
    assert frac.shape == (3, 20, 20)
    np.testing.assert_allclose(frac, 1.0, atol=1e-6)


def test_dead_leaves_is_deterministic_varied_and_sharp():
    a = dead_leaves(np.random.default_rng(5), 128, 3, 2)
    b = dead_leaves(np.random.default_rng(5), 128, 3, 2)
    c = dead_leaves(np.random.default_rng(6), 128, 3, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (3, 128, 128) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 1
    # piecewise constant: most horizontal neighbours are equal, a few jump (edges)
    d = np.abs(np.diff(a, axis=2)).max(axis=0)
    assert 0.5 < (d < 1e-6).mean() < 0.99
    assert (d > 0.05).mean() > 0.01
    # many distinct colours
    assert len(np.unique(a[0])) > 100


def test_folder_source_validation(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        FolderSource(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        FolderSource(str(tmp_path / "empty"))
    Image.fromarray(np.zeros((20, 50, 3), np.uint8)).save(tmp_path / "small.png")
    src = FolderSource(str(tmp_path))
    with pytest.raises(InputError, match=r"small.png is 50x20 pixels.*at least 30x30"):
        src.validate(30)
    src.validate(20)


def test_dead_leaves_source_checks_frame_size():
    with pytest.raises(InputError, match="source.size = 32"):
        DeadLeavesSource(size=32).validate(40)


def test_kodak_folder_frames_are_linear_and_shrunk():
    d = shared("kodak24")
    src = FolderSource(str(d), linearize=True, shrink_factor=2)
    assert len(src) == 24
    f = src.frame(np.random.default_rng(0))
    assert f.name.endswith(".png") and f.pixels.shape[1:] in ((256, 384), (384, 256))
    assert 0 <= f.pixels.min() and f.pixels.max() <= 1


def _noise_pngs(folder, n: int, shape: tuple[int, int], prefix: str):
    """``n`` random 8-bit RGB PNGs ``{prefix}{i}.png`` in a new ``folder``."""
    folder.mkdir()
    for i in range(n):
        arr = (np.random.default_rng(i).random((*shape, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{prefix}{i}.png")
    return folder


def test_mixed_source_follows_its_weights_and_is_deterministic(tmp_path):
    from data_gen.sources import build_source

    folder = _noise_pngs(tmp_path / "photos", 3, (40, 50), "p")
    cfg = {
        "kind": "mix",
        "sources": {
            "photos": {"kind": "folder", "path": str(folder), "weight": 3},
            "leaves": {"kind": "dead_leaves", "size": 32, "weight": 1},
        },
    }
    src = build_source(cfg, 3)
    names = [src.frame(np.random.default_rng(i)).name for i in range(400)]
    share = np.mean([n.startswith("photos/") for n in names])
    assert abs(share - 0.75) < 0.07
    assert all(n.startswith(("photos/p", "leaves/dead_leaves:")) for n in names)
    a, b = (src.frame(np.random.default_rng(7)) for _ in range(2))
    assert a.name == b.name and np.array_equal(a.pixels, b.pixels)
    for bad, needle in (
        ({"kind": "mix", "sources": {}}, "source.sources is empty"),
        (
            {"kind": "mix", "sources": {"x": {"kind": "mix"}}},
            "source.sources.x.kind = 'mix': give kind",
        ),
        (
            {"kind": "mix", "sources": {"x": {"kind": "dead_leaves", "weight": -1}}},
            "must be >= 0",
        ),
        ({"kind": "mix", "sources": {"x": {"kind": "folder"}}}, "source.sources.x.path is missing"),
    ):
        with pytest.raises(InputError, match=needle):
            build_source(bad, 3)


def test_mixed_dataset_shards_are_byte_identical_across_runs(tmp_path):
    from data_gen.generate import generate
    from tests.conftest import compose_cfg

    folder = _noise_pngs(tmp_path / "imgs", 2, (70, 70), "q")
    args = ["source=mix", f"source.sources.photos.path={folder}", "source.sources.leaves.size=64"]
    for run in ("a", "b"):
        generate(compose_cfg(f"out_dir={tmp_path / run}", *args))
    for f in sorted((tmp_path / "a").glob("*.h5")):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()
