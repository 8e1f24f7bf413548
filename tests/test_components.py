"""Physics of the further components (data_gen/components.py): relight, fog, defocus with
depth, camera-shake and file kernels, lens distortion and its correction."""

from __future__ import annotations

import numpy as np
import pytest

from data_gen.core.errors import InputError
from data_gen.physics.defocus import coc_radius_px, defocus, disc_kernel
from data_gen.physics.depth import check_depth
from data_gen.physics.distortion import (
    correct_distortion,
    distort_image,
    distort_points,
    undistort_points,
)
from data_gen.physics.fog import add_fog, draw_fog, remove_fog, transmission
from data_gen.physics.motion import draw_motion, load_kernels, shake_trajectory, trajectory_kernel
from data_gen.physics.relight import draw_relight, gain_map, relight
from tests.conftest import run_if, shared


def scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.05, 0.9, (3, h, w)).astype(np.float32)


def test_relight_applies_a_smooth_positive_gain_exactly():
    rng = np.random.default_rng(3)
    params = draw_relight(rng, (1, 3), (0.3, 1.0), (0.2, 1.5), (0.2, 0.6))
    g = gain_map((48, 64), **params)
    assert g.shape == (48, 64) and g.dtype == np.float32 and (g > 0).all()
    assert np.abs(np.diff(g, axis=1)).max() < 0.2 * g.max()  # smooth: no edges
    s = scene()
    np.testing.assert_array_equal(relight(s, g), (s * g[None]).astype(np.float32))
    # ambient only: the same scale everywhere
    flat = gain_map((8, 8), 0.7, np.zeros((0, 4)))
    np.testing.assert_allclose(flat, 0.7)
    with pytest.raises(InputError, match="gain must be > 0"):
        gain_map((8, 8), 0.0, np.zeros((0, 4)))
    with pytest.raises(InputError, match="amplitudes >= 0"):
        gain_map((8, 8), 0.5, np.array([[0.5, 0.5, 0.3, -1.0]]))


def test_fog_is_recovered_exactly_from_transmission_and_airlight():
    rng = np.random.default_rng(1)
    s = scene()
    depth = rng.uniform(0.5, 30, (48, 64)).astype(np.float32)
    p = draw_fog(rng, (0.05, 0.5), (0.6, 1.0), 0.05, 3)
    t = transmission(depth, p["beta"])
    np.testing.assert_allclose(t, np.exp(-p["beta"] * depth.astype(np.float64)), rtol=1e-6)
    foggy = add_fog(s, t, p["airlight"])
    assert (foggy >= np.minimum(s, p["airlight"].min()) - 1e-6).all()  # between J and A
    np.testing.assert_allclose(remove_fog(foggy, t, p["airlight"]), s, atol=2e-6)
    # far away: the airlight; no fog (β = 0): the scene itself
    far = add_fog(s, transmission(np.full((48, 64), 1e4, np.float32), 1.0), [0.8] * 3)
    np.testing.assert_allclose(far, 0.8, atol=1e-6)
    np.testing.assert_array_equal(add_fog(s, transmission(depth, 0.0), [0.8] * 3), s)
    with pytest.raises(InputError, match="beta = -0.1"):
        transmission(depth, -0.1)


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (np.full((4, 4), np.nan), "NaN"),
        (-np.ones((4, 4)), "negative depths"),
        (np.ones((4, 5)), "5x4 px, the image is 4x4"),
        (np.ones((4,)), "expected (H, W)"),
    ],
)
def test_bad_depth_maps_are_refused_in_one_line(depth, message):
    with pytest.raises(InputError, match=None) as e:
        check_depth(depth, (4, 4) if depth.ndim == 2 else None, name="img.png")
    assert message in str(e.value) and "img.png" in str(e.value)


def test_defocus_radius_follows_the_thin_lens_circle_of_confusion():
    # 50 mm f/2 focused at 2 m, 4 µm pixels: an object at 4 m
    f, n, s, d, pitch = 0.05, 2.0, 2.0, 4.0, 4e-6
    diameter = f * f / (n * (s - f)) * abs(d - s) / d
    r = coc_radius_px(d, s, 50, n, 4)
    assert r == pytest.approx(diameter / 2 / pitch, rel=1e-12)
    assert coc_radius_px(s, s, 50, n, 4) == 0  # in focus
    far = coc_radius_px(1e9, s, 50, n, 4)  # infinity: f²/(N(s−f)) / 2 / pitch
    assert far == pytest.approx(f * f / (n * (s - f)) / 2 / pitch, rel=1e-6)
    k = disc_kernel(3.0)
    assert k.shape == (7, 7) and k.sum() == pytest.approx(1) and (k >= 0).all()
    assert k[3, 3] == k.max() and k[0, 0] == 0  # a disc, not a square
    assert disc_kernel(0.3).shape == (1, 1)


def test_defocus_keeps_a_sharp_foreground_free_of_background_colour():
    h = w = 64
    img = np.zeros((3, h, w), np.float32)
    img[0] = 1.0  # background: red, far and blurred
    depth = np.full((h, w), 10.0, np.float32)
    img[:, :, 32:] = 0.0
    img[2, :, 32:] = 1.0  # foreground: blue, near and in focus
    depth[:, 32:] = 2.0
    radius = coc_radius_px(depth, 2.0, 50, 1.4, 4)
    assert radius[:, 32:].max() == 0 and radius[:, :32].min() > 3
    out = defocus(img, depth, radius, layers=2)
    # the in-focus foreground is untouched up to its edge: no red bleeds over it
    np.testing.assert_array_equal(out[:, :, 32:], img[:, :, 32:])
    # the blurred background is normalised (no darkening at the frame edge) and stays red
    np.testing.assert_allclose(out[0, :, :32], 1.0, atol=1e-5)
    assert np.abs(out[2, :, :32]).max() < 1e-5
    # focused on the background instead: the blurred near layer spreads over the sharp
    # background's pixels next to it (partial occlusion), the background stays sharp away
    radius = np.where(depth < 5, 4.0, 0.0)
    out = defocus(img, depth, radius, layers=2)
    assert out[2, 32, 31] > 0.2 and out[0, 32, 31] < 0.8 and out[2, 32, 28] > 0.01
    np.testing.assert_allclose(out[:, :, :20], img[:, :, :20], atol=1e-5)


def test_camera_shake_kernels_are_normalised_non_negative_and_of_the_requested_length():
    rng = np.random.default_rng(7)
    for length in (5.0, 12.5, 30.0):
        path = shake_trajectory(rng, length)
        assert np.linalg.norm(np.diff(path, axis=0), axis=1).sum() == pytest.approx(length)
        k = trajectory_kernel(path)
        assert k.ndim == 2 and k.shape[0] % 2 == 1 and (k >= 0).all()
        assert k.sum() == pytest.approx(1, abs=1e-6)
        ys, xs = np.nonzero(k > 0)
        assert max(np.ptp(ys), np.ptp(xs)) <= length + 2  # support no longer than the path
    # a straight path along x gives a horizontal line kernel
    line = np.stack([np.zeros(11), np.arange(11.0)], 1)
    k = trajectory_kernel(line)
    assert k[k.shape[0] // 2].sum() == pytest.approx(1, abs=1e-6)
    d = draw_motion(np.random.default_rng(0), (6, 6), 256)
    assert d["length"] == 6 and d["kernel"].sum() == pytest.approx(1, abs=1e-6)
    with pytest.raises(InputError, match="motion length = 0"):
        shake_trajectory(rng, 0)


@run_if(shared_data=True)
def test_the_levin_kernels_load_normalised(tmp_path):
    ks = load_kernels(shared("psf", "levin09_kernels.npz"))
    assert sorted(ks) == [f"k{i}" for i in range(1, 9)]
    for k in ks.values():
        assert 13 <= k.shape[0] <= 27 and (k >= 0).all() and k.sum() == pytest.approx(1, 1e-5)
    bad = tmp_path / "bad.npz"
    np.savez(bad, k1=-np.ones((3, 3)))
    with pytest.raises(InputError, match="kernel k1 must be finite, >= 0"):
        load_kernels(bad)


def test_distortion_then_correction_returns_a_grids_points_within_a_tenth_of_a_pixel():
    shape = (120, 160)
    ys, xs = np.meshgrid(np.linspace(0, 119, 9), np.linspace(0, 159, 11), indexing="ij")
    grid = np.stack([ys.ravel(), xs.ravel()], 1)
    for k in ((-0.15,), (0.08, -0.02), (0.2, 0.05)):
        d = distort_points(grid, shape, k)
        assert np.abs(d - grid).max() > 1  # it does move the corners
        back = undistort_points(d, shape, k)
        assert np.abs(back - grid).max() < 0.1
    # images: distort then correct gives back a smooth image (bicubic resampling)
    yy, xx = np.mgrid[0:120, 0:160] / 40.0
    img = np.stack([np.sin(yy) * np.cos(xx), np.cos(yy + xx), 0.5 + 0.0 * yy]).astype(np.float32)
    k = (-0.1,)
    round_trip = correct_distortion(distort_image(img, k), k)
    assert np.abs(round_trip - img)[:, 10:-10, 10:-10].max() < 5e-3
    assert np.abs(distort_image(img, k) - img).max() > 0.05


def test_dead_leaves_depth_is_exact_and_leaves_the_image_unchanged():
    from data_gen.sources import DeadLeavesSource, dead_leaves

    img = dead_leaves(np.random.default_rng(5), size=64, supersample=2)
    same, z = dead_leaves(np.random.default_rng(5), size=64, supersample=2, depth=(1.0, 50.0))
    np.testing.assert_array_equal(img, same)  # depth is drawn after the image
    assert z.shape == (64, 64) and z.dtype == np.float32 and 1 <= z.min() and z.max() <= 50
    # inside a leaf (depth constant over a 3x3 neighbourhood) the colour is constant too:
    # one depth per leaf
    inner = np.ones_like(z, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            inner &= np.roll(z, (dy, dx), (0, 1)) == z
    inner[[0, -1]] = inner[:, [0, -1]] = False
    ys, xs = np.nonzero(inner[:, :-1] & inner[:, 1:] & (z[:, :-1] == z[:, 1:]))
    assert len(ys) > 100
    np.testing.assert_array_equal(img[:, ys, xs], img[:, ys, xs + 1])
    frame = DeadLeavesSource(size=64, depth=(2.0, 9.0)).frame(np.random.default_rng(0))
    assert frame.depth is not None and frame.depth.min() >= 2.0
    assert DeadLeavesSource(size=64).frame(np.random.default_rng(0)).depth is None
    with pytest.raises(InputError, match="need 0 < near <= far"):
        dead_leaves(np.random.default_rng(0), size=32, depth=(5.0, 1.0))


def test_photographs_take_depth_maps_in_metres_or_disparity(tmp_path):
    from PIL import Image

    from data_gen.sources import FolderSource, stereo_example

    (tmp_path / "img").mkdir()
    (tmp_path / "z").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8)).save(
            tmp_path / "img" / f"{name}.png"
        )
    np.save(tmp_path / "z" / "a.npy", np.full((20, 30), 3.5, np.float32))
    disparity = np.full((20, 30), 40, np.uint16)  # 16-bit PNG, in 1/4 px
    Image.fromarray(disparity).save(tmp_path / "z" / "b.png")
    metres = FolderSource(str(tmp_path / "img"), depth={"path": str(tmp_path / "z")})
    np.testing.assert_allclose(metres.load(tmp_path / "img" / "a.png").depth, 3.5)
    stereo = FolderSource(
        str(tmp_path / "img"),
        shrink_factor=2,
        depth={
            "path": str(tmp_path / "z"),
            "units": "disparity",
            "scale": 0.25,
            "focal_px": 1000.0,
            "baseline_m": 0.1,
        },
    )
    b = stereo.load(tmp_path / "img" / "b.png")
    assert b.depth.shape == b.pixels.shape[1:] == (10, 15)  # shrunk with the image
    np.testing.assert_allclose(b.depth, 1000 * 0.1 / 10.0, rtol=1e-6)  # z = f·B / d
    np.save(tmp_path / "z" / "a.npy", np.full((20, 31), 3.5, np.float32))
    with pytest.raises(InputError, match=r"a\.npy: 31x20 px, the image is 30x20"):
        metres.load(tmp_path / "img" / "a.png")
    np.save(tmp_path / "z" / "a.npy", np.full((20, 30), np.nan, np.float32))
    with pytest.raises(InputError, match="NaN"):
        metres.load(tmp_path / "img" / "a.png")
    (tmp_path / "z" / "a.npy").unlink()
    with pytest.raises(InputError, match="image a.png: no depth map"):
        metres.load(tmp_path / "img" / "a.png")
    # the built-in real example: scikit-image's Middlebury motorcycle with its disparity
    f = stereo_example()
    assert f.depth.shape == f.pixels.shape[1:] == (500, 741)
    assert np.isfinite(f.depth).all() and 1.5 < f.depth.min() < f.depth.max() < 6.0


@pytest.mark.parametrize(
    ("k", "ok"),
    [
        ((-0.12, 0.02), True),
        ((0.05,), True),
        ((-10.0,), False),
        ((1000.0,), False),
        ((-0.5,), False),
    ],
)
def test_distortion_coefficients_must_keep_the_radial_map_increasing_and_modest(k, ok):
    from data_gen.core.errors import InputError
    from data_gen.physics.distortion import check_coefficients

    if ok:
        assert check_coefficients(k) == k
        r = np.linspace(0, 1, 101)
        assert (np.diff(r * (1 + sum(c * r ** (2 * (i + 1)) for i, c in enumerate(k)))) > 0).all()
    else:
        with pytest.raises(InputError, match="distortion = "):
            check_coefficients(k)
