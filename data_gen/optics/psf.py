"""Point-spread functions: pupil diffraction, Zernike aberrations, sensor sampling.

Pure functions: wavelengths in nanometres, pixel pitch and optical path
difference (OPD) in micrometres, PSF arrays ``(C, K, K)`` float32 with ``K`` odd,
each channel summing to 1. The renderer never computes a PSF per patch: it asks a
:class:`PSFBank` for the index of the PSF that belongs to a patch's position in the
frame and convolves with cached transforms of ``bank.psfs[index]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.fft
from scipy.special import factorial

from data_gen.core.errors import InputError, require

# Noll index of the named Zernike terms (Noll 1976, RMS-normalised).
ZERNIKE_NAMES: dict[str, int] = {
    "piston": 1,
    "tilt_x": 2,
    "tilt_y": 3,
    "defocus": 4,
    "astig_45": 5,
    "astig_0": 6,
    "coma_y": 7,
    "coma_x": 8,
    "trefoil_y": 9,
    "trefoil_x": 10,
    "spherical": 11,
}


def noll_to_nm(j: int) -> tuple[int, int]:
    """Noll index ``j >= 1`` -> radial order ``n`` and signed azimuthal frequency ``m``."""
    require(j >= 1, f"Zernike Noll index must be >= 1, got {j}")
    n = math.ceil((-3 + math.sqrt(9 + 8 * (j - 1))) / 2)
    # first Noll index of order n is n(n+1)/2 + 1
    k = j - n * (n + 1) // 2 - 1
    # |m| values of order n in Noll order: parity of n, increasing, each twice except 0
    ms = [m for m in range(n % 2, n + 1, 2) for _ in ((0,) if m == 0 else (0, 1))]
    m = ms[k]
    if m != 0 and j % 2 == 1:
        m = -m  # odd j -> sine term
    return n, m


def zernike(j: int, rho: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """RMS-normalised Zernike polynomial ``Z_j`` (Noll) on the unit disk; 0 outside."""
    n, m = noll_to_nm(j)
    am = abs(m)
    radial = np.zeros_like(rho)
    for s in range((n - am) // 2 + 1):
        c = (
            (-1) ** s
            * factorial(n - s)
            / (factorial(s) * factorial((n + am) // 2 - s) * factorial((n - am) // 2 - s))
        )
        radial += c * rho ** (n - 2 * s)
    norm = math.sqrt(n + 1) if m == 0 else math.sqrt(2 * (n + 1))
    if m > 0:
        ang = np.cos(am * theta)
    elif m < 0:
        ang = np.sin(am * theta)
    else:
        ang = 1.0
    return np.where(rho <= 1.0, norm * radial * ang, 0.0)


def parse_zernike(coeffs: Mapping | None, where: str = "zernike") -> dict[int, float]:
    """``{name or Noll index: OPD in µm RMS}`` -> ``{noll: µm}``; unknown names are errors."""
    out: dict[int, float] = {}
    for key, val in (coeffs or {}).items():
        if isinstance(key, str) and key in ZERNIKE_NAMES:
            j = ZERNIKE_NAMES[key]
        else:
            try:
                j = int(key)
            except (TypeError, ValueError):
                raise InputError(
                    f"{where}.{key}: unknown Zernike term; use a Noll index or one of "
                    f"{sorted(ZERNIKE_NAMES)}"
                ) from None
        try:
            v = float(val)
        except (TypeError, ValueError):
            raise InputError(f"{where}.{key} = {val!r} is not a number (µm RMS)") from None
        require(math.isfinite(v), f"{where}.{key} = {val!r} is not finite")
        out[j] = out.get(j, 0.0) + v
    return out


def _mft_matrix(n_in: int, n_out: int, d_in: float, d_out: float, scale: float) -> np.ndarray:
    """DFT matrix from ``n_in`` centred samples (spacing d_in) to ``n_out`` (spacing d_out)."""
    x = (np.arange(n_in) - (n_in - 1) / 2) * d_in
    u = (np.arange(n_out) - (n_out - 1) / 2) * d_out
    return np.exp(-2j * np.pi * scale * np.outer(u, x))


def pupil_psf(
    wavelength_nm: float,
    f_number: float,
    sample_pitch_um: float,
    size: int,
    zernike_um: Mapping[int, float] | None = None,
    pupil_samples: int | None = None,
) -> np.ndarray:
    """Point-sampled incoherent PSF of a circular pupil with Zernike aberrations.

    Computed with a matrix Fourier transform, so the image-plane sampling is exact
    (no rounding of the pupil/FFT size ratio). Returns ``(size, size)`` float64 with
    the optical axis on the centre sample (``size`` odd), normalised to sum 1 over
    the window.

    wavelength_nm: nm; f_number: image-space working f-number N;
    sample_pitch_um: image-plane sample spacing in µm; zernike_um: OPD, µm RMS.
    """
    require(size % 2 == 1, f"PSF window size must be odd, got {size}")
    require(wavelength_nm > 0, f"wavelength must be > 0 nm, got {wavelength_nm}")
    require(f_number > 0, f"f-number must be > 0, got {f_number}")
    lam = wavelength_nm * 1e-3  # µm
    extent = size * sample_pitch_um
    if pupil_samples is None:
        # the pupil grid must resolve the PSF window without aliasing: period λN·Np > extent
        pupil_samples = int(min(1024, max(64, math.ceil(2.0 * extent / (lam * f_number)))))
    npup = pupil_samples
    # normalised pupil coordinates in [-1, 1]
    c = (np.arange(npup) - (npup - 1) / 2) / (npup / 2)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    rho = np.hypot(xx, yy)
    theta = np.arctan2(yy, xx)
    aperture = (rho <= 1.0).astype(float)
    opd = np.zeros_like(rho)
    for j, coef in (zernike_um or {}).items():
        if coef:
            opd += coef * zernike(j, rho, theta)
    pupil = aperture * np.exp(2j * np.pi * opd / lam)
    # pupil coordinate (normalised radius 1 = D/2) -> image coordinate: x_img = λ N · ν,
    # where ν is the pupil coordinate in units of D. Phase 2π·u·x_p/(λ f) = 2π·u·(c/2)/(λN).
    d_in = 1.0 / (npup / 2)  # spacing of c
    a = _mft_matrix(npup, size, d_in, sample_pitch_um, 0.5 / (lam * f_number))
    field_ = a @ pupil @ a.T
    psf = np.abs(field_) ** 2
    return psf / psf.sum()


def oversampling_for(pixel_pitch_um: float, wavelength_nm: float, f_number: float) -> int:
    """Odd sub-samples per pixel so the point-sampled PSF meets Nyquist (λN/2), capped at 15."""
    need = 2.0 * pixel_pitch_um / (wavelength_nm * 1e-3 * f_number)
    os_ = max(3, math.ceil(need))
    os_ = min(15, os_)
    return os_ if os_ % 2 == 1 else os_ + 1


def pixel_psf(
    wavelength_nm: float,
    f_number: float,
    pixel_pitch_um: float,
    size: int,
    zernike_um: Mapping[int, float] | None = None,
    oversample: int | None = None,
) -> np.ndarray:
    """PSF integrated over square pixels of 100 % fill factor: ``(size, size)``, sum 1.

    Computed at ``oversample`` (odd) points per pixel and box-summed, so the PSF
    centre lies at the centre of the central pixel.
    """
    os_ = oversample or oversampling_for(pixel_pitch_um, wavelength_nm, f_number)
    require(os_ % 2 == 1, f"oversample must be odd, got {os_}")
    fine = pupil_psf(wavelength_nm, f_number, pixel_pitch_um / os_, size * os_, zernike_um)
    psf = fine.reshape(size, os_, size, os_).sum(axis=(1, 3))
    return psf / psf.sum()


def sensor_mtf(
    fy: np.ndarray, fx: np.ndarray, olpf_separation_um: float, aperture_um: float
) -> np.ndarray:
    """MTF of a 4-spot birefringent OLPF and a square pixel aperture.

    ``fy``, ``fx`` in cycles/µm. The OLPF splits a point into four spots at
    ``(±s/2, ±s/2)``: transfer ``cos(π fx s)·cos(π fy s)`` (first zero at ``1/(2s)``);
    the aperture (side ``aperture_um``) contributes ``sinc(fx a)·sinc(fy a)``.
    """
    s, a = float(olpf_separation_um), float(aperture_um)
    return np.cos(np.pi * fy * s) * np.cos(np.pi * fx * s) * np.sinc(fy * a) * np.sinc(fx * a)


def apply_sensor_mtf(
    fine: np.ndarray, fine_pitch_um: float, olpf_separation_um: float, aperture_um: float
) -> np.ndarray:
    """Convolve a finely sampled PSF ``(..., M, M)`` with the OLPF spots and pixel aperture.

    Done in the Fourier domain on a grid padded by the kernels' reach (no wrap-around);
    exact for a PSF sampled above its Nyquist rate. Returns the same shape, float64.
    """
    m = fine.shape[-1]
    reach = olpf_separation_um / 2 + aperture_um / 2
    pad = math.ceil(reach / fine_pitch_um) + 1
    n = int(scipy.fft.next_fast_len(m + 2 * pad, real=True))
    spec = scipy.fft.rfft2(fine, s=(n, n))
    fy = scipy.fft.fftfreq(n, d=fine_pitch_um)[:, None]
    fx = scipy.fft.rfftfreq(n, d=fine_pitch_um)[None, :]
    spec *= sensor_mtf(fy, fx, olpf_separation_um, aperture_um)
    # zero padding beyond m + pad: the window [0, m) of the circular result is exact
    return scipy.fft.irfft2(spec, s=(n, n))[..., :m, :m]


def sensor_psf(
    wavelength_nm: float,
    f_number: float,
    pixel_pitch_um: float,
    size: int,
    zernike_um: Mapping[int, float] | None = None,
    olpf_separation_um: float = 0.0,
    fill_factor: float = 1.0,
    oversample: int | None = None,
) -> np.ndarray:
    """Pixel PSF ``(size, size)`` (sum 1) of optics + OLPF + pixel aperture.

    The optical PSF is computed at ``oversample`` points per pixel, convolved with the
    OLPF spots (separation in µm, 0 = none) and a square aperture of side
    ``sqrt(fill_factor)·pitch``, then sampled at the pixel centres.
    """
    require(0 < fill_factor <= 1, f"fill_factor = {fill_factor} must be in (0, 1]")
    require(olpf_separation_um >= 0, f"OLPF separation {olpf_separation_um} µm must be >= 0")
    os_ = oversample or oversampling_for(pixel_pitch_um, wavelength_nm, f_number)
    require(os_ % 2 == 1, f"oversample must be odd, got {os_}")
    fine_pitch = pixel_pitch_um / os_
    fine = pupil_psf(wavelength_nm, f_number, fine_pitch, size * os_, zernike_um)
    conv = apply_sensor_mtf(
        fine, fine_pitch, olpf_separation_um, math.sqrt(fill_factor) * pixel_pitch_um
    )
    psf = np.maximum(conv[os_ // 2 :: os_, os_ // 2 :: os_], 0.0)  # tiny ringing < 0
    return psf / psf.sum()


def validate_psf(psf: np.ndarray, channels: int, where: str) -> np.ndarray:
    """Check a PSF and return it as ``(channels, K, K)`` float32, each channel summing to 1.

    Accepts ``(K, K)`` (same PSF for every channel), ``(C, K, K)`` or ``(K, K, C)``.
    ``where`` names the PSF's origin in error messages.
    """
    a = np.asarray(psf)
    require(a.dtype.kind in "fiub", f"{where}: PSF must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 2:
        a = np.repeat(a[None], channels, axis=0)
    elif a.ndim == 3:
        if a.shape[0] == channels and a.shape[1] == a.shape[2]:
            pass
        elif a.shape[2] == channels and a.shape[0] == a.shape[1]:
            a = np.moveaxis(a, 2, 0)
        else:
            raise InputError(
                f"{where}: PSF shape {a.shape} is neither (K, K), ({channels}, K, K) nor "
                f"(K, K, {channels})"
            )
    else:
        raise InputError(f"{where}: PSF must be 2-D or per-channel 3-D, got shape {a.shape}")
    k = a.shape[-1]
    require(a.shape[-2] == k, f"{where}: PSF must be square, got {a.shape[-2]}x{k}")
    require(k % 2 == 1, f"{where}: PSF size must be odd so it has a centre pixel, got {k}x{k}")
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{where}: PSF has {int(bad.sum())} non-finite values (first at {idx})")
    if (a < 0).any():
        idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
        raise InputError(
            f"{where}: PSF has negative values (min {a.min():.3g} at {idx}); "
            "a PSF is an intensity and must be >= 0"
        )
    sums = a.sum(axis=(1, 2))
    for c, s in enumerate(sums):
        require(s > 0, f"{where}: PSF channel {c} sums to 0")
    return (a / sums[:, None, None]).astype(np.float32)


def load_psf_file(path: str | Path, channels: int) -> np.ndarray:
    """Read PSFs from ``.npy`` / ``.npz`` (every array a PSF) or an image file.

    Returns ``(N, channels, K, K)`` float32 (each PSF validated, zero-padded to the
    largest size in the file).
    """
    p = Path(path)
    require(p.is_file(), f"PSF file {p} does not exist")
    arrays: list[tuple[str, np.ndarray]] = []
    try:
        if p.suffix == ".npy":
            arrays = [(str(p), np.load(p, allow_pickle=False))]
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                arrays = [(f"{p}[{k}]", z[k]) for k in sorted(z.files)]
        else:
            from data_gen.sources import read_image  # image file: linear values as stored

            arrays = [(str(p), read_image(p, linearize=False))]
    except InputError:
        raise
    except Exception as e:  # numpy / zip errors: name the file
        raise InputError(f"PSF file {p} cannot be read: {e}") from None
    require(bool(arrays), f"PSF file {p} holds no arrays")
    psfs = [validate_psf(a, channels, where) for where, a in arrays]
    k = max(q.shape[-1] for q in psfs)
    out = np.zeros((len(psfs), channels, k, k), np.float32)
    for i, q in enumerate(psfs):
        o = (k - q.shape[-1]) // 2
        out[i, :, o : o + q.shape[-1], o : o + q.shape[-1]] = q
    return out


def inverse_filter(psf: np.ndarray, size: int, balance: float) -> np.ndarray:
    """Wiener inverse of ``psf`` ``(C, K, K)``: ``(C, size, size)`` kernels ``g`` such that
    ``g ⊛ (psf ⊛ s) ≈ s``, regularised by ``balance`` (noise-to-signal power, relative to
    ``|H|² ≤ 1``): ``G = H* / (|H|² + balance)``, computed on a grid of ``4·max(K, size)``
    and cropped to ``size`` (odd) around the centre."""
    require(size % 2 == 1 and size >= 1, f"inverse filter size {size} must be odd")
    require(balance > 0, f"inverse filter balance {balance} must be > 0")
    c, k, _ = psf.shape
    n = 4 * max(k, size)
    pad = np.zeros((c, n, n))
    pad[:, :k, :k] = psf
    pad = np.roll(pad, (-(k // 2), -(k // 2)), axis=(1, 2))  # PSF centre at the origin
    h = np.fft.fft2(pad)
    g = np.real(np.fft.ifft2(np.conj(h) / (np.abs(h) ** 2 + balance)))
    g = np.roll(g, (size // 2, size // 2), axis=(1, 2))[:, :size, :size]
    return g.astype(np.float32)
