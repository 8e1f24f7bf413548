"""The deconvolution that knows where it is (model.field_kernels): its eigen-kernel path, the
positions training and deployment hand it, ONNX export and the models without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from data_gen.core.errors import InputError
from data_gen.generate import build_pipeline, generate
from data_gen.optics import inverse_filter
from data_gen.optics.symmetry import bank_symmetries, dihedral, transform_index
from residual_train.data import ResidualDataModule, augment_draw
from residual_train.deploy import infer_tiled, load_model
from residual_train.models import build_model
from tests.conftest import compose_cfg
from tests.helpers.training import train_cfg

LENS = ["lens=sharp_prime", "lens.size=9", "lens.heights=3", "lens.azimuths=4"]


@pytest.fixture(scope="module")
def bank():
    return build_pipeline(compose_cfg("out_dir=x", *LENS)).bank


def wiener_path(x: torch.Tensor, psf: np.ndarray, size: int, dc=None) -> torch.Tensor:
    """The single Wiener path of one PSF, as the model without positions computes it; with
    ``dc`` (per channel) its kernel's sum moved there by a constant."""
    g = inverse_filter(psf.astype(np.float64), size, 1e-3).astype(np.float64)
    if dc is not None:
        g += (np.asarray(dc)[:, None, None] - g.sum(axis=(1, 2), keepdims=True)) / size**2
    w = torch.from_numpy(g[:, None, ::-1, ::-1].astype(np.float32))
    r = size // 2
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), w, groups=x.shape[1])


def test_constant_maps_give_the_wiener_path_of_that_psf(bank):
    """With as many eigen-kernels as the bank's rank, the position-aware path of a patch of
    PSF j (its constant maps) is the Wiener inverse of PSF j with the mean path's DC gain
    (the cropped inverses' sums differ; a sum varying by position would change brightness
    by position), within rounding — in the convolution (evaluation, ONNX) and the FFT
    (training) implementations."""
    # distinct PSFs: (state · 3 + height) · 4 + azimuth
    pick = [5, 9, 10, 20, 45]
    psfs = bank.psfs[pick]
    gaps = [np.abs(psfs[i] - psfs[j]).sum() for i in range(5) for j in range(i + 1, 5)]
    assert min(gaps) > 0.05
    cfg = dict(arch="unet", width=8, depth=2, blocks=1, deconv=15, field_kernels=5)
    net = build_model({**cfg, "field_positions": 5}, 3)
    net.init_field(psfs)
    x = torch.rand(2, 3, 33, 41, generator=torch.Generator().manual_seed(0))
    dc = inverse_filter(psfs.mean(axis=0).astype(np.float64), 15, 1e-3).sum(axis=(1, 2))
    for j in range(5):
        want = wiener_path(x, psfs[j], 15, dc)
        f = net.field_of(torch.tensor([j, j]), 33, 41)
        for train in (False, True):
            net.train(train)
            got = net._deconvolve(x, f).detach()
            torch.testing.assert_close(got, want, atol=2e-5 * float(want.abs().max()), rtol=0)
        # another position's maps give another image
        other = net._deconvolve(x, net.field_of(torch.tensor([(j + 1) % 5] * 2), 33, 41)).detach()
        assert float((other - want).abs().max()) > 1e-3


def test_learnt_eigen_kernels_change_no_brightness(bank):
    """Whatever the eigen-kernels are learnt to be (here: random, sums far from 0), a flat
    image comes out of the path at the mean path's DC gain at every position."""
    net = build_model(
        dict(arch="unet", width=8, depth=2, blocks=1, deconv=9, field_kernels=3, field_positions=5),
        3,
    )
    net.init_field(bank.psfs[[5, 9, 10, 20, 45]])
    with torch.no_grad():
        net.deconv_field.copy_(torch.rand(net.deconv_field.shape) + 0.5)
    flat = torch.full((1, 3, 24, 24), 0.3)
    want = 0.3 * net.deconv.weight.detach().sum(dim=(1, 2, 3))[None, :, None, None]
    for j in range(5):
        for train in (False, True):
            net.train(train)
            got = net._deconvolve(flat, net.field_of(torch.tensor([j]), 24, 24)).detach()
            torch.testing.assert_close(got, want.expand_as(got), atol=1e-5, rtol=0)


def test_fewer_kernels_approximate_the_bank_and_one_psf_is_the_mean_path(bank):
    from residual_train.models.field import eigen_kernels

    g = np.stack([inverse_filter(p.astype(np.float64), 15, 1e-3) for p in bank.psfs[:48]])
    errs = []
    for k in (1, 4, 16):
        base, eigen, table = eigen_kernels(bank.psfs[:48], 15, 1e-3, k)
        approx = base + np.einsum("nk,kcij->ncij", table, eigen)
        errs.append(float(((approx - g) ** 2).sum() / (g**2).sum()))
        assert np.allclose((table**2).mean(0)[table.any(0)], 1, atol=1e-5)  # unit RMS maps
    assert errs[0] > errs[1] > errs[2]
    # a lens whose bank holds one PSF (soft_prime): no eigen-kernel, the mean-PSF path
    one = build_pipeline(compose_cfg("out_dir=x")).bank.psfs
    base, eigen, table = eigen_kernels(one, 15, 1e-3, 4)
    assert not eigen.any() and not table.any()
    np.testing.assert_allclose(base, inverse_filter(one[0].astype(np.float64), 15, 1e-3))


def test_field_options_are_checked_in_one_line():
    with pytest.raises(InputError, match="model.field_kernels = 4: .* needs model.deconv"):
        build_model(dict(arch="unet", field_kernels=4, field_positions=3), 3)
    with pytest.raises(InputError, match="model.field_positions = 0"):
        build_model(dict(arch="unet", deconv=9, field_kernels=4), 3)
    net = build_model(dict(arch="unet", deconv=9, field_kernels=2, field_positions=3), 3)
    with pytest.raises(InputError, match=r"the PSF bank has shape \(2, 3, 5, 5\)"):
        net.init_field(np.ones((2, 3, 5, 5)) / 25)
    with pytest.raises(ValueError, match="pass field"):
        net(torch.zeros(1, 3, 16, 16))


def test_transforms_map_each_psf_to_the_one_the_flipped_patch_shows(bank):
    for t in bank_symmetries(bank.psfs):
        perm = transform_index(bank.psfs, t)
        moved = np.ascontiguousarray(dihedral(bank.psfs, t))
        d = np.abs(moved - bank.psfs[perm]).sum(axis=(1, 2, 3))
        assert d.max() <= 0.02 * 3, (t, d.max())
        if t == 4:  # a left-right flip: azimuth θ -> π − θ at the same height and state
            assert (perm != np.arange(len(perm))).any()


@pytest.mark.parametrize("h, w", [(66, 130), (130, 300), (9, 70), (7, 20), (256, 264)])
def test_tiles_have_sides_the_network_does_not_pad_and_cover_the_frame(h, w):
    """Every tile side is a multiple of the network's stride where the frame allows (a frame
    under one tile is covered by two overlapping tiles of a multiple, not padded), and the
    blend of the tiles' maps gives each pixel its own value back."""
    x = np.random.default_rng(5).random((3, h, w)).astype(np.float32)
    sides = set()

    def run(tiles):
        sides.update(tiles.shape[-2:])
        return {"a": tiles * 2}

    out = infer_tiled(run, x, ["a"], tile=256, overlap=64, multiple=8)
    np.testing.assert_allclose(out["a"], 2 * x, rtol=1e-6)
    assert all(s % 8 == 0 or s == min(h, w) < 8 for s in sides), sides


def test_tiles_carry_the_slices_of_the_per_pixel_maps():
    """Deployment cuts the frame's position maps into the same tiles as the image: a network
    that returns its maps gives back the whole frame's maps exactly."""
    rng = np.random.default_rng(0)
    x = rng.random((3, 150, 207)).astype(np.float32)
    aux = np.concatenate([2 * x + 1, rng.random((3, 150, 207), dtype=np.float32)])
    seen = []

    def run(tiles, extra):
        assert np.array_equal(extra[:, :3], 2 * tiles + 1)  # the maps of the same pixels
        seen.append(extra.shape)
        return {"a": extra[:, 3:], "b": tiles + extra[:, 3:]}

    out = infer_tiled(run, x, ["a", "b"], tile=64, overlap=16, batch=3, aux=aux)
    np.testing.assert_allclose(out["a"], aux[3:], atol=1e-6)
    np.testing.assert_allclose(out["b"], x + aux[3:], atol=1e-6)
    assert sum(s[0] for s in seen) == 3 * 4 and all(s[1:] == (6, 64, 64) for s in seen)
    with pytest.raises(InputError, match="do not cover the image"):
        infer_tiled(run, x, ["a"], aux=aux[:, :10])


@pytest.fixture(scope="module")
def field_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("field")
    generate(
        compose_cfg(
            f"out_dir={root / 'ds'}",
            "shards=3",
            "samples_per_shard=16",
            "patch_size=24",
            "source.size=96",
            "patches_per_source=8",
            "sensor.iso=[400,3200]",
            *LENS,
        )
    )
    from residual_train.training.train import train

    cfg = train_cfg(
        f"data.dir={root / 'ds'}",
        f"run_dir={root / 'run'}",
        "data.sigma_map=true",
        "model.deconv=9",
        "model.deconv_base=denoised",
        "model.field_kernels=3",
    )
    train(cfg)
    return root


def test_batches_carry_the_psf_each_patch_shows(field_run):
    dm = ResidualDataModule(
        str(field_run / "ds"), crop=16, batch_size=4, geometric="all", psf_index=True
    )
    ds = dm.dataset(train=True)
    perm = dm.psf_perm()
    flipped = 0
    for i, seed in enumerate(range(100, 140)):
        item = ds[(i % len(ds), seed)]
        k, j = ds.locate(i % len(ds))
        meta = ds._meta[k][j]
        t = augment_draw(24, 16, seed, True, dm.transforms)[2]
        assert int(item["psf_index"]) == perm[t, int(meta["psf_index"])]
        flipped += int(perm[t, int(meta["psf_index"])] != int(meta["psf_index"]))
    assert flipped > 0  # some flips moved a patch to another position's PSF
    val = dm.dataset(train=False)[(0, 0)]
    assert int(val["psf_index"]) == int(val_meta(dm)["psf_index"])


def test_batches_rendered_on_the_fly_carry_the_psf_each_patch_shows(field_run):
    otf = {"enabled": True, "samples_per_epoch": 32, "pool": 2, "prefetch": 1}
    dm = ResidualDataModule(
        str(field_run / "ds"), crop=16, batch_size=8, val_shards="all", onthefly=otf,
        geometric="all", psf_index=True,
    )  # fmt: skip
    cpu = torch.device("cpu")
    b = dm.render_batch(3, cpu)
    _, meta, t, maps = dm.renderer(cpu).render_with_transforms(3)  # the same batch again
    want = dm.psf_perm()[t, meta["psf_index"]]
    assert b["psf_index"].tolist() == want.tolist() and (t != 0).any() and maps is None


def val_meta(dm):
    ds = dm.dataset(train=False)
    ds._file(0)
    return ds._meta[0][0]


def test_a_field_aware_model_trains_exports_with_parity_and_deploys(field_run, tmp_path):
    from residual_train.release.export import export

    cfg = yaml.safe_load((field_run / "run/config.yaml").read_text())
    assert cfg["model"]["field_positions"] == 3 * 4 * 4  # states x heights x azimuths
    card = export(field_run / "run/checkpoints/last.ckpt", tmp_path / "exp")
    assert card["inputs"] == ["x", "sigma", "field"] and card["parity"]["max_abs_diff"] < 1e-4
    assert len(card["field"]["table"]) == 48 and len(card["field"]["table"][0]) == 3
    onnx, pt = load_model(tmp_path / "exp"), load_model(tmp_path / "exp", backend="torch")
    x = np.random.default_rng(1).random((3, 70, 90)).astype(np.float32)
    a = onnx.predict(x, tile=48, overlap=16, iso=800)
    b = pt.predict(x, tile=48, overlap=16, iso=800)
    for h in a:
        np.testing.assert_allclose(a[h], b[h], atol=1e-4)
    # the frame's own positions by default; another lens state is another correction
    idx = onnx.psf_index((70, 90), 0)
    assert len(np.unique(idx)) > 4
    same = onnx.predict(x, tile=48, overlap=16, iso=800, psf_index=idx)
    np.testing.assert_array_equal(same["blur"], a["blur"])
    c = onnx.predict(x, tile=48, overlap=16, iso=800, lens_state=3)
    assert float(np.abs(c["blur"] - a["blur"]).max()) > 1e-4
    with pytest.raises(InputError, match="lens_state = 9"):
        onnx.predict(x, iso=800, lens_state=9)


def test_models_without_positions_are_unchanged():
    """The shipped default has no field input; its graph and weights load and run as before."""
    m = load_model("default")
    assert not m.field_input and m.card["inputs"] == ["x", "sigma"]
    net = build_model(dict(m.card["model"]), 3)
    assert not any("field" in k for k in net.state_dict())
    from safetensors.torch import load_file

    net.load_state_dict(load_file(str(m.path / "weights.safetensors")))  # strict


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_blur_with_a_psf_per_pixel_matches_a_per_pixel_reference(bank, backend):
    """``psf_per=block``'s batched blur: every pixel (at least the PSF's radius from the
    window's border) is the dot product of its neighbourhood with its own PSF."""
    from data_gen.backend import BACKENDS
    from data_gen.components import BatchContext
    from data_gen.components.blur import Blur

    be = BACKENDS[backend].create("cpu", 1)
    rng = np.random.default_rng(5)
    b, w, k = 3, 30, bank.size
    r = k // 2
    x = rng.random((b, 3, w, w)).astype(np.float32)
    blocks = rng.integers(len(bank.psfs), size=(b, 4, 4))
    index = np.repeat(np.repeat(blocks, 8, 1), 8, 2)[:, :w, :w].astype(np.int32)
    index[2] = index[2, 0, 0]  # a sample with one PSF among ones with several
    blur = Blur({})
    prepared = blur.prepare_batch([{}] * b, BatchContext((w, w), None, index, bank.psfs), be)
    assert blur.kernel(prepared) is None  # applied in the image domain, not as a spectrum
    out = be.numpy(blur.apply_batch(be.asarray(x), prepared, be))
    pixels = [rng.integers(lo, hi, 60) for lo, hi in ((0, b), (r, w - r), (r, w - r))]
    for i, yy, xx in zip(*pixels, strict=True):
        psf = bank.psfs[index[i, yy, xx]]  # convolution: the kernel flipped over the window
        patch = x[i, :, yy - r : yy + r + 1, xx - r : xx + r + 1][:, ::-1, ::-1]
        np.testing.assert_allclose(out[i, :, yy, xx], (patch * psf).sum((1, 2)), atol=2e-5)


def test_patches_rendered_per_block_are_crops_of_the_frame_render(field_run):
    """On the fly with ``psf_per=block``, a training patch is what evaluation renders for the
    whole frame (data_gen.render.render_frame), cut at the patch, and the batch hands the model
    each pixel's PSF, flipped and turned with the patch."""
    from data_gen.render import render_frame

    otf = {"enabled": True, "samples_per_epoch": 32, "pool": 2, "prefetch": 0,
           "generator": {"psf_per": "block"}}  # fmt: skip
    dm = ResidualDataModule(
        str(field_run / "ds"), crop=24, batch_size=8, val_shards="all", onthefly=otf,
        geometric="all", psf_index=True,
    )  # fmt: skip
    cpu = torch.device("cpu")
    ren = dm.renderer(cpu)
    out, meta, t, maps = ren.render_with_transforms(2)
    bank = ren.pipe.bank
    cells = bank.grid.shape[1] * bank.grid.shape[2]
    frames = {f.name: f for _, f in ren.slots}
    r, p = bank.size // 2, 24
    varied = 0
    for i in range(len(meta)):
        state = int(meta["psf_index"][i]) // cells
        frame = frames[meta["source"][i]]
        ref = render_frame(
            frame.pixels, bank, _noise(), np.random.default_rng(0), float(meta["exposure"][i]),
            state=state,
        )  # fmt: skip
        y, x = int(meta["y"][i]) - r, int(meta["x"][i]) - r
        crop = ref["blur"][:, y : y + p, x : x + p]
        idx = ref["psf_index"][y : y + p, x : x + p]
        np.testing.assert_allclose(out["blur"][i].numpy(), dihedral(crop, int(t[i])), atol=2e-5)
        np.testing.assert_array_equal(maps[i], dihedral(idx, int(t[i])))
        varied += int(len(np.unique(idx)) > 1)
    assert varied > 0 and (t != 0).any()
    b = dm.render_batch(2, cpu)
    assert b["psf_index"].shape == (8, p, p)
    assert b["psf_index"].tolist() == dm.psf_perm()[t[:, None, None], maps].tolist()
    cfg = dict(arch="unet", width=8, depth=2, blocks=1, deconv=9, field_kernels=3)
    net = build_model({**cfg, "field_positions": len(bank.psfs)}, 3)
    net.init_field(bank.psfs)
    maps_b = net.field_of(b["psf_index"], p, p)
    i = int(np.argmax([len(np.unique(m)) for m in maps]))
    assert maps_b.shape == (8, 3, p, p) and maps_b[i].flatten(1).std(1).max() > 0


def _noise():
    from data_gen.noise import NoiseModel

    return NoiseModel(np.full(3, 1e-4, np.float32), np.full(3, 1e-6, np.float32))


def test_psf_per_block_is_refused_for_shards_in_one_line(tmp_path):
    with pytest.raises(InputError, match="psf_per = block: .*on-the-fly training only"):
        generate(compose_cfg(f"out_dir={tmp_path}", "psf_per=block", *LENS))
    assert not any(tmp_path.iterdir())


def test_a_frames_index_map_is_each_blocks_nearest_psf(bank):
    """``psf_index_map`` (evaluation and deployment) against the plain rule: each 8-px block
    of the output, the last ones cut by its edge, takes the PSF nearest its centre."""
    from data_gen.render import psf_index_map

    for shape, frame, off, state in [((77, 93), (77, 93), 0, 0), ((150, 227), (160, 237), 5, 2)]:
        want = np.zeros(shape, np.int32)
        for y0 in range(0, shape[0], 8):
            for x0 in range(0, shape[1], 8):
                cy = off + y0 + min(8, shape[0] - y0) / 2
                cx = off + x0 + min(8, shape[1] - x0) / 2
                want[y0 : y0 + 8, x0 : x0 + 8] = bank.index_at(cy / frame[0], cx / frame[1], state)
        got = psf_index_map(bank, shape, frame, off, state)
        assert got.dtype == np.int32 and (got == want).all() and len(np.unique(got)) > 3


def test_a_self_ensemble_view_reads_the_psf_each_of_its_pixels_shows(field_run, tmp_path):
    """Self-ensemble of a field-aware model: each flipped or turned view of a frame reads, at
    each pixel, the bank PSF that pixel shows after the transform (training's rule for a
    flipped patch). Under the flips and the half turn, which map the sensor's rectangle
    onto itself, that is the PSF the view's own position map gives."""
    from data_gen.optics.symmetry import INVERSE
    from residual_train.release.export import export

    export(field_run / "run/checkpoints/last.ckpt", tmp_path / "exp")
    plain, ens = load_model(tmp_path / "exp"), load_model(tmp_path / "exp", self_ensemble=True)
    psfs = ens.bank().psfs
    assert ens.transforms == bank_symmetries(psfs) and {2, 4, 6} <= set(ens.transforms)
    idx = plain.psf_index((64, 64))
    x = np.random.default_rng(4).random((3, 64, 64)).astype(np.float32)
    want, kw = 0, dict(tile=48, overlap=16, iso=800)
    for t in ens.transforms:
        view = np.ascontiguousarray(ens.psf_perm()[t][dihedral(idx, t)])
        shown = np.ascontiguousarray(dihedral(psfs[idx], t))  # each source pixel's PSF, moved
        shown = np.ascontiguousarray(dihedral(np.moveaxis(shown, (0, 1), (-2, -1)), t))
        assert np.abs(psfs[view] - np.moveaxis(shown, (-2, -1), (0, 1))).max() < 0.02
        if t in (2, 4, 6):
            assert np.array_equal(psfs[view], psfs[idx]), t
        maps = plain.predict(np.ascontiguousarray(dihedral(x, t)), psf_index=view, **kw)
        want = want + dihedral(maps["blur"], INVERSE[t])
    got = ens.predict(x, **kw)["blur"]
    np.testing.assert_allclose(got, want / len(ens.transforms), atol=1e-6)
