"""PSF physics, tested by properties (deepinv-style), not snapshots."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import j1

from data_gen.core.errors import InputError
from data_gen.optics import (
    load_psf_file,
    noll_to_nm,
    pixel_psf,
    pupil_psf,
    validate_psf,
    zernike,
    zernike_bank,
)
from tests.conftest import shared
from tests.helpers.scenes import radial_first_minimum


@pytest.mark.parametrize("wl,n", [(550.0, 4.0), (450.0, 8.0), (650.0, 2.8)])
def test_airy_first_dark_ring_at_1_22_lambda_n(wl, n):
    pitch = 0.25  # µm per sample
    psf = pupil_psf(wl, n, pitch, 101)
    r = radial_first_minimum(psf, pitch)
    assert abs(r - 1.22 * wl * 1e-3 * n) <= pitch


def test_airy_profile_matches_bessel_formula():
    wl, n, pitch = 550.0, 4.0, 0.2
    psf = pupil_psf(wl, n, pitch, 81)
    c = 40
    x = np.arange(1, 30) * pitch
    v = np.pi * x / (wl * 1e-3 * n)
    airy = (2 * j1(v) / v) ** 2
    np.testing.assert_allclose(psf[c, c + 1 : c + 30] / psf[c, c], airy, atol=2e-3)


def test_pixel_psf_normalised_finite_and_symmetric_without_aberrations():
    psf = pixel_psf(540.0, 2.8, 3.0, 15)
    assert np.isfinite(psf).all() and (psf >= 0).all()
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(psf, psf[::-1, :], atol=1e-12)
    np.testing.assert_allclose(psf, psf.T, atol=1e-12)
    assert np.unravel_index(psf.argmax(), psf.shape) == (7, 7)


def second_moment(psf: np.ndarray) -> float:
    k = psf.shape[0]
    yy, xx = np.mgrid[:k, :k] - k // 2
    return float((psf * (yy**2 + xx**2)).sum())


def test_longer_wavelength_and_defocus_widen_the_psf():
    blue = pixel_psf(450.0, 8.0, 1.0, 31)
    red = pixel_psf(650.0, 8.0, 1.0, 31)
    assert second_moment(red) > 1.3 * second_moment(blue)
    sharp = pixel_psf(550.0, 4.0, 2.0, 21)
    soft = pixel_psf(550.0, 4.0, 2.0, 21, {4: 0.3})
    assert second_moment(soft) > 2 * second_moment(sharp)


def test_coma_breaks_symmetry_along_its_axis_only():
    psf = pixel_psf(550.0, 4.0, 1.0, 31, {8: 0.15})  # coma_x
    k = 15
    yy, xx = np.mgrid[:31, :31] - k
    cx, cy = (psf * xx).sum(), (psf * yy).sum()
    assert abs(cx) > 0.2  # centroid shifted along x (pixels)
    assert abs(cy) < 1e-6
    np.testing.assert_allclose(psf, psf[::-1, :], atol=1e-10)  # still mirror-symmetric in y


def test_zernike_polynomials_are_orthonormal_on_the_unit_disk():
    n = 400
    c = (np.arange(n) - (n - 1) / 2) / (n / 2)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    rho, th = np.hypot(xx, yy), np.arctan2(yy, xx)
    inside = rho <= 1
    z = np.stack([zernike(j, rho, th)[inside] for j in range(1, 12)])
    gram = z @ z.T / inside.sum()
    np.testing.assert_allclose(gram, np.eye(11), atol=0.02)
    assert [noll_to_nm(j) for j in (1, 2, 3, 4, 5, 6, 7, 8, 11)] == [
        (0, 0),
        (1, 1),
        (1, -1),
        (2, 0),
        (2, -2),
        (2, 2),
        (3, -1),
        (3, 1),
        (4, 0),
    ]


@pytest.mark.parametrize(
    "psf,needle",
    [
        (np.full((5, 5), np.nan), "non-finite"),
        (-np.ones((5, 5)), "negative"),
        (np.ones((4, 4)), "odd"),
        (np.zeros((5, 5)), "sums to 0"),
        (np.ones((5, 5, 2)), "neither"),
        (np.ones((3, 5)), "square"),
    ],
)
def test_bad_psfs_are_rejected_with_the_reason_and_origin(psf, needle):
    with pytest.raises(InputError) as e:
        validate_psf(psf, 3, "kernels.npy")
    assert needle in str(e.value) and "kernels.npy" in str(e.value)


def test_psf_file_formats(tmp_path):
    k = np.random.default_rng(0).random((3, 9, 9))
    np.save(tmp_path / "chw.npy", k)
    np.save(tmp_path / "hwc.npy", np.moveaxis(k, 0, 2))
    a, b = load_psf_file(tmp_path / "chw.npy", 3), load_psf_file(tmp_path / "hwc.npy", 3)
    np.testing.assert_allclose(a, b)
    assert a.shape == (1, 3, 9, 9)
    np.testing.assert_allclose(a.sum(axis=(2, 3)), 1, rtol=1e-6)
    np.save(tmp_path / "bad.npy", np.pad(k, ((0, 0), (0, 1), (0, 1))))
    with pytest.raises(InputError, match="bad.npy.*odd"):
        load_psf_file(tmp_path / "bad.npy", 3)


def test_levin_kernels_load_as_a_normalised_bank():
    bank = load_psf_file(shared("psf", "levin09_kernels.npz"), 3)
    assert bank.shape == (8, 3, 27, 27)
    np.testing.assert_allclose(bank.sum(axis=(2, 3)), 1, rtol=1e-5)


def test_zernike_bank_validates_lens_values():
    with pytest.raises(InputError, match=r"lens.f_number = -2"):
        zernike_bank([550.0], -2.0, 3.0, 7)
    with pytest.raises(InputError, match="unknown Zernike term"):
        zernike_bank([550.0], 2.0, 3.0, 7, {"comma": 0.1})
    bank = zernike_bank([610.0, 540.0, 465.0], 2.8, 3.0, 15, {"defocus": 0.1})
    assert bank.psfs.shape == (1, 3, 15, 15) and bank.state_of(0).f_number == 2.8
