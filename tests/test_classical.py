"""Classical baselines per component (residual_train.evaluate.classical): each renders its
component with the project's own physics on a small real photograph and must undo part of
it; the oracles are exact where they are given everything."""

from __future__ import annotations

import numpy as np
import pytest

from data_gen.core.errors import InputError
from data_gen.noise import NoiseModel
from data_gen.physics.convolve import blur_image
from data_gen.physics.defocus import coc_radius_px, composite_layers, defocus_layers
from data_gen.physics.fog import add_fog, transmission
from data_gen.physics.motion import shake_trajectory, trajectory_kernel
from data_gen.physics.relight import gain_map, relight
from data_gen.sources import dead_leaves, shrink, srgb_to_linear
from residual_train.evaluate.classical import (
    BASELINES_BY_COMPONENT,
    GIVEN,
    Truth,
    deblur_kernel_oracle,
    deblur_layers_oracle,
    dehaze_dark_channel,
    dehaze_oracle,
    estimate_dark_channel,
)
from residual_train.evaluate.classical.relight import (
    illumination_polyfit,
    illumination_retinex,
    relight_polyfit,
    relight_retinex,
)
from residual_train.evaluate.oracle import oracle_scale, psnr

AIRLIGHT = np.array([0.78, 0.75, 0.72], np.float32)
M = 10  # margin trimmed after a blur (the renderer's rule: the blur's support is inside)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """Astronaut, shrunk 4x (128 x 128), linear: smooth skin and sharp edges."""
    from skimage import data

    img = srgb_to_linear(data.astronaut().astype(np.float32) / 255).transpose(2, 0, 1)
    return shrink(np.ascontiguousarray(img), 4.0)


def trim(a: np.ndarray) -> np.ndarray:
    return a[..., M:-M, M:-M]


def ramp_depth(shape, near=2.0, far=60.0) -> np.ndarray:
    """A street-like depth: far at the top row, near at the bottom (metres)."""
    return np.linspace(far, near, shape[0], dtype=np.float32)[:, None].repeat(shape[1], 1)


def test_registry_lists_every_component_with_what_each_baseline_is_given():
    assert set(BASELINES_BY_COMPONENT) == {"relight", "fog", "defocus", "blur", "motion", "noise"}
    for c, fns in BASELINES_BY_COMPONENT.items():
        assert set(fns) == set(GIVEN[c])
        for name in fns:  # a name that says oracle is described as one
            assert "oracle" not in name or "oracle" in GIVEN[c][name].lower(), (c, name)


def test_fog_oracle_inverts_the_rendering_to_float_precision(photo):
    t = transmission(ramp_depth(photo.shape[1:]), 0.045)
    foggy = add_fog(photo, t, AIRLIGHT)
    out = dehaze_oracle(foggy, t, AIRLIGHT)
    assert psnr(foggy, photo) < 15
    # float32 rounding of I (~6e-8) amplified by 1/t at most
    assert np.abs(out - photo).max() < 1e-6 / float(t.min())
    via_registry = BASELINES_BY_COMPONENT["fog"]["oracle_t"](foggy, Truth(t=t, airlight=AIRLIGHT))
    np.testing.assert_array_equal(via_registry, out)


def test_dark_channel_prior_finds_the_airlight_and_lifts_the_fog(photo):
    t = transmission(ramp_depth(photo.shape[1:]), 0.045)
    foggy = add_fog(photo, t, AIRLIGHT)
    est = estimate_dark_channel(foggy)
    np.testing.assert_allclose(est.airlight, AIRLIGHT, atol=0.05)
    # the refined transmission follows the true one (far = low, near = high)
    assert np.corrcoef(est.refined.ravel(), t.ravel())[0, 1] > 0.8
    out = BASELINES_BY_COMPONENT["fog"]["dark_channel"](foggy, Truth())
    assert psnr(out, photo) > psnr(foggy, photo) + 5
    srgb = dehaze_dark_channel(foggy, space="srgb")
    assert np.isfinite(srgb).all() and psnr(srgb, photo) > psnr(foggy, photo)


def two_plane_defocus(photo):
    """Left half at 1.2 m, right half at 6 m, focus at 2.5 m (25 mm f/5.6, 4 µm pixels):
    both planes blurred, the near one more."""
    depth = np.full(photo.shape[1:], 6.0, np.float32)
    depth[:, : photo.shape[2] // 2] = 1.2
    radius = np.minimum(coc_radius_px(depth, 2.5, 25.0, 5.6, 4.0), 6.0)
    plan = defocus_layers(depth, radius, layers=4)
    blurred = composite_layers(photo, plan)
    layers = [(trim(m), k, trim(a)) for m, k, a in plan]
    return trim(blurred), trim(photo), layers


def test_defocus_deconvolved_with_the_true_discs_per_layer(photo):
    x, clean, layers = two_plane_defocus(photo)
    assert len({k.shape[0] for _, k, _ in layers}) == 2  # two planes, two discs
    before = psnr(x, clean)
    for name, fn in BASELINES_BY_COMPONENT["defocus"].items():
        out = fn(x, Truth(clean=clean, layers=layers))
        assert out.shape == x.shape and out.dtype == np.float32
        # (a 13 px disc over half of a 108 px frame, and a depth edge in the middle where
        # the rendering is a composite that no disc inverts: a modest but clear gain)
        assert psnr(out, clean) > before + 1, name
    # the discs swapped between the layers do worse than the true ones
    swapped = [(m, k2, a) for (m, _, a), (_, k2, _) in zip(layers, layers[::-1], strict=True)]
    right, _ = deblur_layers_oracle(x, layers, "richardson_lucy", clean)
    wrong, _ = deblur_layers_oracle(x, swapped, "richardson_lucy", clean)
    assert psnr(right, clean) > psnr(wrong, clean) + 1
    # each layer's choice is judged on that layer: the chosen balances form a list
    _, chosen = deblur_layers_oracle(x, layers, "wiener", clean)
    assert len(chosen) == len(layers) and all(c is not None for c in chosen)


def test_motion_deconvolved_with_the_true_kernel_beats_the_input_clearly(photo):
    k = trajectory_kernel(shake_trajectory(np.random.default_rng(5), 9.0))
    x, clean = trim(blur_image(photo, k)), trim(photo)
    before = psnr(x, clean)
    for name, fn in BASELINES_BY_COMPONENT["motion"].items():
        assert psnr(fn(x, Truth(clean=clean, kernel=k)), clean) > before + 6, name
    # a wrong kernel (the true one turned a quarter) does much worse than the true one
    right, _ = deblur_kernel_oracle(x, k, "wiener", clean)
    wrong, _ = deblur_kernel_oracle(x, np.rot90(k), "wiener", clean)
    assert psnr(right, clean) > psnr(wrong, clean) + 3


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """Fine dead leaves (128 px, leaves of at most 4 px): a scene whose large-scale
    brightness is stationary, where the smooth-illumination prior holds."""
    return dead_leaves(np.random.default_rng(2), size=128, r_max=4.0)


def test_relight_estimate_recovers_a_known_smooth_gain(texture):
    lights = np.array([[0.3, 0.2, 0.3, 0.8], [0.8, 0.9, 0.25, 0.5]])
    gain = gain_map(texture.shape[1:], 0.5, lights)
    x = relight(texture, gain)
    scale_only = oracle_scale(x, texture) * x  # the global scale alone, no spatial estimate
    out = BASELINES_BY_COMPONENT["relight"]["smooth_oracle"](x, Truth(clean=texture))
    assert psnr(out, texture) > psnr(scale_only, texture) + 4
    # the gain it divided out matches the true one up to the global scale: PSNR > 24 dB
    # (relative to the gain's peak; the global scale alone reaches 19 dB)
    g = x.mean(0) / np.maximum(out.mean(0), 1e-6)
    g = g * oracle_scale(g, gain)
    assert psnr(g / gain.max(), gain / gain.max()) > 24
    # both estimates do their part, and the better one is what smooth_oracle returns
    a, _ = relight_retinex(x, texture)
    b, order = relight_polyfit(x, texture)
    assert min(psnr(a, texture), psnr(b, texture)) > psnr(scale_only, texture) + 3
    assert psnr(out, texture) == pytest.approx(max(psnr(a, texture), psnr(b, texture)))
    assert order >= 2  # a plane (order 1) cannot follow two lights


def test_relight_illumination_estimates_are_smooth_and_positive(texture):
    steps = np.abs(np.diff(texture.mean(0), axis=1)).max()  # the texture's sharpest step
    for g in (illumination_retinex(texture, 0.2), illumination_retinex(texture, "msr")):
        assert (g > 0).all() and np.abs(np.diff(g, axis=1)).max() < 0.1 * steps
    g = illumination_polyfit(texture, 3)
    assert (g > 0).all() and g.shape == texture.shape[1:]
    assert np.abs(np.diff(g, axis=1)).max() < 0.1 * steps


NOISE = NoiseModel([1e-2] * 3, [1e-5] * 3)  # a small sensor at a high ISO


def test_lens_blur_and_noise_use_todays_pipelines(photo):
    yy, xx = np.mgrid[-4:5, -4:5]
    psf = np.exp(-(yy**2 + xx**2) / (2 * 1.2**2)).astype(np.float32)  # a soft lens PSF
    psf /= psf.sum()
    psfs = np.repeat(psf[None, None], 3, axis=1)
    index = np.zeros(photo.shape[1:], np.int64)[M:-M, M:-M]
    x, clean = trim(blur_image(photo, psf)), trim(photo)
    truth = Truth(clean=clean, psfs=psfs, index=index)
    for name in ("wiener_oracle", "wiener_wavelet"):
        out = BASELINES_BY_COMPONENT["blur"][name](x, truth)
        assert psnr(out, clean) > psnr(x, clean) + 3, name
    rng = np.random.default_rng(0)
    noisy = clean + NOISE.sample(clean, rng.standard_normal(clean.shape).astype(np.float32))
    for name, fn in BASELINES_BY_COMPONENT["noise"].items():
        assert psnr(fn(noisy, Truth(noise=NOISE)), clean) > psnr(noisy, clean) + 1, name


@pytest.mark.parametrize(
    ("component", "name", "missing"),
    [
        ("fog", "oracle_t", "truth.t"),
        ("defocus", "rl_oracle", "truth.layers"),
        ("motion", "wiener_oracle", "truth.kernel"),
        ("relight", "smooth_oracle", "truth.clean"),
        ("blur", "bm3d_wiener", "truth.psfs"),
        ("noise", "bm3d", "truth.noise"),
    ],
)
def test_a_missing_truth_is_refused_in_one_line(photo, component, name, missing):
    with pytest.raises(InputError, match=missing) as e:
        BASELINES_BY_COMPONENT[component][name](photo, Truth())
    assert "\n" not in str(e.value)


def test_bad_images_and_options_are_refused_in_one_line(photo):
    with pytest.raises(InputError, match=r"\(C, H, W\)"):
        dehaze_dark_channel(photo[0])
    with pytest.raises(InputError, match="space"):
        dehaze_dark_channel(photo, space="log")
    bad = photo.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        BASELINES_BY_COMPONENT["fog"]["dark_channel"](bad, Truth())
    with pytest.raises(InputError, match="truth.clean is"):
        BASELINES_BY_COMPONENT["motion"]["rl_oracle"](
            photo, Truth(clean=photo[:, :-1], kernel=np.ones((3, 3)))
        )
    with pytest.raises(InputError, match="kernel must be finite"):
        deblur_kernel_oracle(photo, -np.ones((3, 3)), "wiener", photo)
    with pytest.raises(InputError, match="method"):
        deblur_kernel_oracle(photo, np.ones((3, 3)), "lucy", photo)


def test_richardson_lucy_path_equals_scikit_image_at_every_count(photo):
    from residual_train.evaluate.deconvolution import richardson_lucy_path, richardson_lucy_plane

    k = trajectory_kernel(shake_trajectory(np.random.default_rng(1), 6.0))
    y = blur_image(photo, k)[1]
    path = richardson_lucy_path(y, k, (3, 12))
    for n in (3, 12):
        np.testing.assert_array_equal(path[n], richardson_lucy_plane(y, k, n))


def test_depth_sets_say_what_is_missing(tmp_path):
    from residual_train.evaluate import depth_sets

    ok, missing = depth_sets.available(tmp_path)
    assert ok == ["motorcycle"] and "cones" in missing and str(tmp_path) in missing["cones"]
    with pytest.raises(InputError, match="needs"):
        depth_sets.load("cones", tmp_path)
    with pytest.raises(InputError, match="unknown"):
        depth_sets.load("middle-earth")


@pytest.mark.shared_data
def test_depth_sets_read_real_depth():
    from residual_train.evaluate import depth_sets
    from tests.conftest import shared

    root = shared("depth", "middlebury2003_ceschini").parent
    cones = depth_sets.load("cones", root)
    assert cones.image.shape == (3, 375, 450) and cones.depth.shape == (375, 450)
    assert 0.96 < cones.valid.mean() < 0.975  # the set's README: 96.8 % of disp2 is known
    z = cones.depth
    assert np.isfinite(z).all() and z[cones.valid].min() == pytest.approx(1.0)
    assert z.max() == pytest.approx(2.0, rel=1e-5)  # filled pixels take measured depths
    # nearer = larger disparity: depth falls where the disparity rises
    from PIL import Image

    disp = np.asarray(Image.open(root / "middlebury2003_ceschini" / "disp2.png"), np.float64)
    v = cones.valid
    assert np.corrcoef(1 / z[v], disp[v])[0, 1] > 0.999
    small = depth_sets.load("cones", root, shrink_factor=2)
    assert small.image.shape == (3, 187, 225)
    # a shrunk pixel is valid when any of its 2x2 was measured, at the mean measured depth
    blocks = cones.valid[:374, :450].reshape(187, 2, 225, 2)
    assert np.array_equal(small.valid, blocks.any(axis=(1, 3)))
    zb = np.where(blocks, cones.depth[:374, :450].reshape(187, 2, 225, 2), 0).sum(axis=(1, 3))
    n = blocks.sum(axis=(1, 3))
    np.testing.assert_allclose(small.depth[n > 0], (zb / np.maximum(n, 1))[n > 0], rtol=1e-5)
    # sparse LiDAR keeps its points: KITTI has ~4 % of pixels measured at full size
    if "kitti_000000" in depth_sets.available(root)[0]:
        kitti = depth_sets.load("kitti_000000", root, shrink_factor=2)
        assert kitti.valid.mean() > 0.1
