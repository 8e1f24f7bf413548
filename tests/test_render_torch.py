"""The torch renderer against the numpy reference: same samples, same physics, FFT rounding."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from data_gen.core.errors import InputError
from data_gen.generate import build_pipeline, config_hash, generate, generation_config
from data_gen.render import batch_noise_model, draw_sample
from data_gen.render_chain import SampleRenderer
from tests.conftest import compose_cfg, run_if, tree_digest


def _render(pipe, specs, **kw):
    return SampleRenderer.for_pipeline(pipe, **kw)(specs)[0]


def _specs(pipe, n=12):
    frame = pipe.source.frame(np.random.default_rng(0))
    p = pipe.cfg["patch_size"]
    return [
        draw_sample(frame, 1000 + i, p, pipe.bank.size, (0.25, 2.0, 0.0), pipe.sensor, pipe.bank)
        for i in range(n)
    ]


@pytest.mark.parametrize("layout", ["rgb", "rggb"])
def test_torch_renderer_matches_the_numpy_reference(layout):
    # a field-varying bank (several PSFs per batch) and exposures up to 2 (clipping at white)
    pipe = build_pipeline(
        compose_cfg(f"layout={layout}", "patch_size=24", "source.size=96", "lens=sharp_prime")
    )
    ref = _render(pipe, _specs(pipe))
    got = _render(pipe, _specs(pipe), backend="torch")
    assert len({s.psf_index for s in _specs(pipe)}) > 1
    for k, a in ref.items():
        assert got[k].shape == a.shape and got[k].dtype == np.float32, k
        assert np.abs(got[k] - a).max() <= 1e-6, (k, np.abs(got[k] - a).max())
    assert np.array_equal(got["clean"], ref["clean"])  # crop and exposure: no FFT involved
    assert (got["noise_blur"] == 1).sum() == (ref["noise_blur"] == 1).sum() > 0  # clipped alike
    # the same noise realisation: the residual noise - clean matches, not only its statistics
    n_ref, n_got = ref["noise"] - ref["clean"], got["noise"] - got["clean"]
    unclipped = ref["noise"] < 1
    assert np.abs(n_got - n_ref)[unclipped].max() <= 1e-6


def test_generator_with_the_torch_renderer(tmp_path):
    base = ["patch_size=24", "source.size=96", "shards=2", "samples_per_shard=8", "progress=false"]
    generate(compose_cfg(f"out_dir={tmp_path / 'np'}", *base))
    for name in ("t1", "t2"):
        generate(compose_cfg(f"out_dir={tmp_path / name}", *base, "renderer=torch"))
    shards = lambda d: {k: v for k, v in tree_digest(d).items() if k.startswith("shard-")}  # noqa: E731
    assert shards(tmp_path / "t1") == shards(tmp_path / "t2")  # same config + seed: same bytes
    with h5py.File(tmp_path / "np" / "shard-00000-of-00002.h5") as a:
        with h5py.File(tmp_path / "t1" / "shard-00000-of-00002.h5") as b:
            ma, mb = a["meta"][:], b["meta"][:]
            for f in ma.dtype.names:  # the same samples (names are variable-length strings)
                x, y = ma[f], mb[f]
                same = list(x) == list(y) if x.dtype == object else np.array_equal(x, y, True)
                assert same, f
            for k in ("clean", "blur", "noise", "noise_blur"):
                assert np.abs(a[k][:] - b[k][:]).max() <= 1e-6, k
    m_np = json.loads((tmp_path / "np" / "manifest.json").read_text())
    m_t = json.loads((tmp_path / "t1" / "manifest.json").read_text())
    assert m_np["config_hash"] != m_t["config_hash"]  # a torch dataset is not a numpy one
    # numpy datasets keep the hash they had before the renderer keys existed
    cfg = compose_cfg(*base)
    legacy = {k: v for k, v in generation_config(cfg).items() if k not in ("renderer", "device")}
    assert config_hash(generation_config(cfg)) == config_hash(legacy)
    # resuming a numpy dataset with the torch renderer is refused, nothing written
    before = tree_digest(tmp_path / "np")
    with pytest.raises(InputError, match="config"):
        generate(compose_cfg(f"out_dir={tmp_path / 'np'}", *base, "renderer=torch"))
    assert tree_digest(tmp_path / "np") == before


@pytest.mark.parametrize(
    "override, needle",
    [
        ("renderer=jax", "renderer = 'jax'"),
        ("device=tpu", "device = 'tpu'"),
        ("device=cuda:7", "device = 'cuda:7'"),
    ],
)
def test_bad_renderer_or_device_is_refused(override, needle, tmp_path):
    import torch

    if override == "device=cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(InputError) as e:
        generate(compose_cfg(f"out_dir={tmp_path / 'x'}", "renderer=torch", override))
    assert needle in str(e.value)
    assert not (tmp_path / "x").exists()


@run_if(gpu=True)
def test_torch_renderer_on_the_gpu_matches_the_reference():
    pipe = build_pipeline(compose_cfg("patch_size=24", "source.size=96", "lens=sharp_prime"))
    ref = _render(pipe, _specs(pipe))
    got = _render(pipe, _specs(pipe), backend="torch", device="cuda")
    for k, a in ref.items():
        assert np.abs(got[k] - a).max() <= 1e-5, k


@pytest.mark.parametrize("layout", ["rgb", "rggb"])
def test_device_normals_keep_the_physics_and_the_noise_statistics(layout):
    pipe = build_pipeline(compose_cfg(f"layout={layout}", "patch_size=32", "source.size=96"))
    host = _render(pipe, _specs(pipe, 32), backend="torch")
    dev = _render(pipe, _specs(pipe, 32), backend="torch", normals="device")
    again = _render(pipe, _specs(pipe, 32), backend="torch", normals="device")
    for k in ("clean", "blur"):  # no noise in them: identical
        assert np.array_equal(dev[k], host[k]), k
    for k in dev:  # reproducible from the batch's first seed
        assert np.array_equal(dev[k], again[k]), k
    assert not np.array_equal(dev["noise_blur"], host["noise_blur"])  # other realisations
    # same statistics: the realisation over σ(blur) is standard normal where nothing clipped
    nm = batch_noise_model([s.noise for s in _specs(pipe, 32)], pipe.cfa)
    ok = (dev["noise_blur"] < 1) & (dev["blur"] < 1)
    r = ((dev["noise_blur"] - dev["blur"]) / nm.std(dev["blur"]))[ok]
    assert abs(r.mean()) < 0.02 and abs(r.std() - 1) < 0.02, (r.mean(), r.std())
    ok &= (dev["noise"] < 1) & (dev["clean"] < 1)  # one realisation shared by both noisy patches
    assert np.allclose(
        (dev["noise"] - dev["clean"])[ok], (dev["noise_blur"] - dev["blur"])[ok], atol=1e-6
    )


def test_device_normals_count_in_the_hash_and_need_the_torch_renderer(tmp_path):
    base = compose_cfg("renderer=torch", f"out_dir={tmp_path}")
    h_host = config_hash(generation_config(base))
    h_dev = config_hash(generation_config({**base, "normals": "device"}))
    assert h_host != h_dev
    assert "normals" not in generation_config(base)  # datasets made before the key: same hash
    with pytest.raises(InputError, match="normals = device: only with renderer = torch"):
        build_pipeline(compose_cfg("normals=device"))


def test_a_cached_psf_spectrum_serves_only_the_backend_and_bank_it_was_made_for():
    """The cache is keyed by ids: a backend freed after a render must not leave its id to a
    new backend (a torch render once got a numpy spectrum that way)."""
    import torch

    from data_gen.backend import NumpyBackend, TorchBackend
    from data_gen.components import Chain, default_settings

    blur = Chain.build(["blur"], default_settings(["blur"]))["blur"]
    psfs = np.random.default_rng(0).random((2, 3, 5, 5)).astype(np.float32)
    want = NumpyBackend().kernel_spectrum(psfs[1], 16)
    for _ in range(20):  # numpy and torch backends made and dropped in turn: ids get reused
        assert isinstance(blur.spectrum(psfs, 1, 16, NumpyBackend()), np.ndarray)
        got = blur.spectrum(psfs, 1, 16, TorchBackend("cpu"))
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-6)
    tb = TorchBackend("cpu")
    assert blur.spectrum(psfs, 1, 16, tb) is blur.spectrum(psfs, 1, 16, tb)  # cached
