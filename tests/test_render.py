"""Rendering physics: FFT blur, the residual identities of docs/design.md §1, the noise model."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy.signal import convolve2d

from data_gen.backend import NumpyBackend, TorchBackend, conv_same, fft_size
from data_gen.generate import config_hash, generate, generation_config
from data_gen.render import draw_exposure
from tests.conftest import compose_cfg


def read_all(d: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    arrays, metas = defaultdict(list), []
    for f in sorted(d.glob("shard-*.h5")):
        with h5py.File(f, "r") as h:
            for k in ("clean", "blur", "noise", "noise_blur"):
                arrays[k].append(h[k][:].astype(np.float64))
            metas.append(h["meta"][:])
    return {k: np.concatenate(v) for k, v in arrays.items()}, np.concatenate(metas)


def test_fft_size_is_fast_and_large_enough():
    for n in (94, 97, 100, 127, 160):
        m = fft_size(n)
        assert m >= n
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        assert r == 1


@pytest.mark.parametrize("backend", [NumpyBackend(), TorchBackend("cpu")], ids=["numpy", "torch"])
def test_batched_fft_blur_equals_direct_valid_convolution(backend):
    """The chain's FFT convolution (per-sample spectra, 'same' alignment) against a
    brute-force convolution: equal on every pixel whose support lies inside the window,
    zero on the border band."""
    rng = np.random.default_rng(0)
    psfs = rng.random((3, 2, 9, 9)).astype(np.float32)
    psfs /= psfs.sum(axis=(2, 3), keepdims=True)
    x = rng.random((5, 2, 28, 28)).astype(np.float32)
    idx = np.array([0, 2, 1, 2, 0])
    spec = backend.kernel_spectrum(psfs[idx], fft_size(28))
    out = backend.numpy(conv_same(backend, backend.asarray(x), spec, 4))
    for i in range(5):
        for c in range(2):
            ref = convolve2d(
                x[i, c].astype(np.float64), psfs[idx[i], c].astype(np.float64), "valid"
            )
            np.testing.assert_allclose(out[i, c, 4:-4, 4:-4], ref, atol=2e-6)
    assert not out[:, :, :4].any() and not out[:, :, :, -4:].any()


def test_residual_identities_hold_for_every_sample(tmp_path):
    summary = generate(
        compose_cfg(
            f"out_dir={tmp_path}",
            "shards=2",
            "exposure.min=0.02",
            "exposure.max=3.0",
            "sensor.iso=[100,6400]",
        )
    )
    assert summary["manifest"]
    a, meta = read_all(tmp_path)
    assert len(meta) == 24
    unclipped = (a["noise"] < 1) & (a["noise_blur"] < 1) & (a["clean"] < 1) & (a["blur"] < 1)
    assert 0.5 < unclipped.mean() < 1  # exposure up to 3 saturates some highlights
    r_b = a["noise"] - a["noise_blur"]
    r_n = a["blur"] - a["noise_blur"]
    # R_b = noise − noise_blur = S − B and R_n = blur − noise_blur = −n, per sample
    np.testing.assert_allclose(r_b[unclipped], (a["clean"] - a["blur"])[unclipped], atol=1e-6)
    np.testing.assert_allclose((a["noise"] - a["clean"])[unclipped], -r_n[unclipped], atol=1e-6)
    # x + R_b + R_n recovers the clean patch
    np.testing.assert_allclose(
        (a["noise_blur"] + r_b + r_n)[unclipped], a["clean"][unclipped], atol=2e-6
    )
    # clipping at white, never above; values below black are kept
    for k in a:
        assert a[k].max() <= 1.0
    assert (a["noise_blur"] < 0).any()
    assert (a["noise_blur"] == 1.0).any()
    # the noise is not zero and differs between samples
    assert np.abs(r_n).mean() > 1e-4
    assert not np.allclose(r_n[0], r_n[1])


def test_float16_storage_keeps_identities_to_half_precision(tmp_path):
    generate(compose_cfg(f"out_dir={tmp_path}", "shards=1", "storage.dtype=float16"))
    with h5py.File(next(tmp_path.glob("*.h5")), "r") as f:
        assert f["clean"].dtype == np.float16
    a, _ = read_all(tmp_path)
    err = np.abs((a["noise"] - a["noise_blur"]) - (a["clean"] - a["blur"]))
    assert err.max() <= 4 * 2.0**-11  # four roundings of values <= 1


@pytest.fixture
def flat_folder(tmp_path) -> tuple[Path, dict[str, float]]:
    """16-bit flat images (linear, no sRGB decoding) at known levels."""
    d = tmp_path / "flat"
    d.mkdir()
    levels = {}
    for v in (0.02, 0.1, 0.35, 0.7):
        q = round(v * 65535)
        name = f"flat_{q:05d}.png"
        Image.fromarray(np.full((80, 80), q, np.uint16)).save(d / name)
        levels[name] = q / 65535
    return d, levels


def test_measured_noise_variance_follows_the_sensor_model(tmp_path, flat_folder):
    folder, levels = flat_folder
    cfg = compose_cfg(
        f"out_dir={tmp_path / 'ds'}",
        "source=folder",
        f"source.path={folder}",
        "source.linearize=false",
        "exposure.min=1",
        "exposure.max=1",
        "sensor.iso=[100,800,6400]",
        "shards=4",
        "samples_per_shard=60",
        "patch_size=32",
        "patches_per_source=1",
        "batch_size=20",
    )
    generate(cfg)
    a, meta = read_all(tmp_path / "ds")
    n = a["noise"] - a["clean"]
    groups = defaultdict(list)
    for i, m in enumerate(meta):
        groups[(m["source"].decode(), float(m["iso"]))].append(i)
    isos = {iso for _, iso in groups}
    assert isos == {100.0, 800.0, 6400.0}
    checked = 0
    for (src, iso), idx in groups.items():
        if len(idx) < 3:
            continue
        m = meta[idx[0]]
        span = m["white"] - m["ob"]
        v = levels[src]
        # docs/design.md §1, per channel, in DN², then normalised
        var_model = (m["k1"] * v * span + m["k0"]) * iso / 100 / span**2
        x = n[idx]  # (k, C, P, P)
        var_meas = x.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1)
        count = x[:, 0].size
        tol = 5 * np.sqrt(2 / (count - 1))  # 5 sigma of a sample variance
        np.testing.assert_allclose(var_meas, var_model, rtol=tol, err_msg=f"{src} ISO {iso}")
        assert abs(x.mean()) < 5 * np.sqrt(var_model.mean() / x.size)
        checked += 1
    assert checked >= 9


def test_fused_noise_kernel_equals_the_numpy_formula():
    from data_gen.noise import NoiseModel
    from data_gen.render import _add_noise_and_clip

    rng = np.random.default_rng(4)
    clean = rng.uniform(-0.01, 1.3, (5, 3, 12, 12)).astype(np.float32)
    blurred = rng.uniform(-0.01, 1.3, (5, 3, 12, 12)).astype(np.float32)
    normal = rng.standard_normal((5, 3, 12, 12), dtype=np.float32)
    a = rng.uniform(1e-5, 1e-2, (5, 3)).astype(np.float32)
    b = rng.uniform(0, 1e-4, (5, 3)).astype(np.float32)
    noise = NoiseModel(a, b)
    n = noise.sample(blurred, normal)
    # below black the variance is B: the signal is never negative, only its noise
    below = blurred < 0
    assert np.allclose(
        noise.variance(blurred)[below], np.broadcast_to(b[..., None, None], blurred.shape)[below]
    )
    want = [np.minimum(v, 1) for v in (clean + n, blurred + n, clean, blurred)]
    noisy, noisy_blur = np.empty_like(clean), np.empty_like(clean)
    _add_noise_and_clip(clean, blurred, normal, noise.std(blurred), noisy, noisy_blur)
    for got, w in zip((noisy, noisy_blur, clean, blurred), want, strict=True):
        assert np.array_equal(got, w)  # bit for bit: shards stay byte-identical


def test_a_share_of_exposures_at_max_leaves_every_other_draw_as_it_was():
    law = (0.25, 1.0, 0.0)
    old = [float(np.exp(np.random.default_rng(s).uniform(np.log(0.25), 0.0))) for s in range(5)]
    assert [draw_exposure(np.random.default_rng(s), law) for s in range(5)] == old
    rng, ref = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(
        draw_exposure(rng, law, 64), np.exp(ref.uniform(np.log(0.25), 0.0, size=64))
    )
    assert rng.random() == ref.random()  # no draw taken beyond the law's own
    e = draw_exposure(np.random.default_rng(3), (0.25, 1.0, 0.3), 20000)
    at = e == 1.0
    assert 0.28 < at.mean() < 0.32 and ((e[~at] >= 0.25) & (e[~at] < 1.0)).all()
    assert draw_exposure(np.random.default_rng(3), (0.5, 1.0, 1.0)) == 1.0
    assert (draw_exposure(np.random.default_rng(3), (0.6, 0.6, 0.5), 9) == 0.6).all()


def test_exposure_at_max_counts_in_the_hash_only_when_used(tmp_path):
    base = generation_config(compose_cfg("out_dir=x"))
    assert "at_max" not in base["exposure"]
    same = generation_config(compose_cfg("out_dir=x", "exposure.at_max=0"))
    assert config_hash(same) == config_hash(base)
    used = generation_config(compose_cfg("out_dir=x", "exposure.at_max=0.25"))
    assert used["exposure"]["at_max"] == 0.25 and config_hash(used) != config_hash(base)
    generate(compose_cfg(f"out_dir={tmp_path}", "shards=1", "exposure.at_max=1"))
    _, meta = read_all(tmp_path)
    assert set(meta["exposure"]) == {1.0}  # the shards' draws follow the same law
