"""Composition with *estimated* residuals stays physical (docs/design.md §4).

The bound every mode must keep, per pixel and channel, with ``k_max = σ(1)/σ(0)``:

* consistent: ``|y − (x + a·R_b + R_n)| ≤ (1 − b)·k_max·|R_n|``;
* literal: ``|y − (x + a·R_b)| ≤ b·k_max·|R_n|``;
* ``a = b = 0`` returns ``x`` exactly.

Residuals come from the shipped model on a real photograph at ISO 6400, and from
deliberately wrong ones whose denoised image ``d = x + R_n`` dips below black in the dark
regions (where the old variance clamp made ``k`` reach ~1,000).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from data_gen.noise import NoiseModel
from data_gen.optics import build_bank
from data_gen.render import render_frame
from residual_train.deploy import load_model
from residual_train.deploy.compose import compose, compose_blur_noise, compose_reference
from residual_train.evaluate import load_images

STRENGTHS = list(itertools.product((0.0, 0.5, 1.0), repeat=2))


@pytest.fixture(scope="module")
def photo():
    """A real photograph rendered through the shipped model's lens at its highest ISO."""
    model = load_model("default")
    ((_, img),) = load_images("builtin", 2.0, True, max_images=1, max_size=160)
    iso = float(model.card["noise_model"]["iso"][-1])
    noise = model.noise_model(iso)
    r = render_frame(img, build_bank(model.card["lens"], 3), noise, np.random.default_rng(5))
    return model, r, noise, iso


def estimated(photo):
    model, r, noise, iso = photo
    maps = model.predict(r["noise_blur"], tile=96, overlap=32, iso=iso)
    return r["noise_blur"], maps["blur"], maps["noise"], noise


def imperfect(photo):
    """True residuals made wrong: R_n pushes d well below black where the scene is dark,
    R_b over-sharpens by 60 % and carries noise."""
    _, r, noise, _ = photo
    x = r["noise_blur"]
    rng = np.random.default_rng(6)
    rb = (r["noise"] - x) * 1.6 + rng.normal(0, 0.01, x.shape).astype(np.float32)
    rn = (r["blur"] - x) * 1.3
    dark = r["blur"] < 0.05
    rn[dark] -= 0.08  # d = x + R_n far below black
    return x, rb.astype(np.float32), rn.astype(np.float32), noise


@pytest.mark.parametrize("source", [estimated, imperfect])
def test_every_mode_keeps_every_pixel_within_the_stated_bound(photo, source):
    x, rb, rn, noise = source(photo)
    if source is imperfect:
        assert ((x + rn) < -0.02).mean() > 0.01  # the case the bound is for
    k_max = noise.k_max[:, None, None]
    tol = 1e-5
    for a, b in STRENGTHS:
        m = x + np.float32(a) * rb + rn
        maps, s = {"blur": rb, "noise": rn}, {"blur": a, "noise": b}
        for y in (
            compose_reference(x, maps, s, noise),
            compose_blur_noise(x, rb, rn, a, b, noise),
            compose(x, maps, s, noise),
        ):
            assert np.isfinite(y).all()
            assert (np.abs(y - m) <= (1 - b) * k_max * np.abs(rn) + tol).all(), (a, b)
        y = compose_blur_noise(x, rb, rn, a, b, noise, mode="literal")
        lit = x + np.float32(a) * rb
        assert (np.abs(y - lit) <= b * k_max * np.abs(rn) + tol).all(), (a, b)
        if a == b == 0:
            for mode in ("consistent", "literal"):
                assert np.array_equal(compose_blur_noise(x, rb, rn, 0, 0, noise, mode=mode), x)


def test_k_never_exceeds_the_sensor_bound_on_estimated_residuals(photo):
    for source in (estimated, imperfect):
        x, rb, rn, noise = source(photo)
        d = x + rn
        k = noise.ratio(d + rb, d)
        assert k.max() <= noise.k_max.max() * (1 + 1e-6)


def test_sharp_noisy_output_stays_near_the_scene_on_a_real_photograph(photo):
    """a = 1, b = 0 with the model's maps: no pixel far outside what the scene spans (the
    landed version gave −6.4 .. 8.3 for a scene of 0.01 .. 0.44 at ISO 6400)."""
    _, r, noise, _ = photo
    x, rb, rn, _ = estimated(photo)
    y = compose_blur_noise(x, rb, rn, 1, 0, noise)
    clean = r["clean"]
    # the kept noise is a few σ of the brightest pixel at most
    margin = 6 * float(noise.std(np.ones((3, 1, 1), np.float32)).max())
    assert y.min() > clean.min() - margin - 0.05 and y.max() < clean.max() + margin + 0.05


def test_the_old_variance_clamp_would_have_exploded_here(photo):
    """Where the estimated d < −B/A, σ²(d) = max(A·d + B, 0) was 0 and k ~ 1e3; the model's
    clamp of the signal at black keeps σ(d) ≥ √B."""
    x, rb, rn, noise = imperfect(photo)
    d = x + rn
    A, B = noise.A[:, None, None], noise.B[:, None, None]
    old_k = np.sqrt((np.maximum(A * (d + rb) + B, 0) + 1e-12) / (np.maximum(A * d + B, 0) + 1e-12))
    assert old_k.max() > 100
    assert noise.ratio(d + rb, d).max() < old_k.max() / 3


def test_a_model_without_a_noise_model_channel_count_is_refused():
    x = np.zeros((3, 8, 8), np.float32)
    from data_gen.core.errors import InputError

    with pytest.raises(InputError, match="noise model has 1 channel"):
        compose_blur_noise(x, x, x, 1, 1, NoiseModel([1e-3], [1e-6]))
    with pytest.raises(InputError, match="residual map 'blur' has shape"):
        compose_blur_noise(x, x[:, :4], x, 1, 1, NoiseModel([1e-3] * 3, [1e-6] * 3))
