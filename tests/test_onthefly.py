"""On-the-fly training data (data.onthefly): batches rendered on the training device from
originals with the generator's physics, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data_gen.core.errors import InputError
from data_gen.noise import NoiseModel
from residual_train.data import ResidualDataModule
from residual_train.training.train import train
from tests.conftest import run_if
from tests.helpers.training import (
    StopAfterEpoch,
    assert_same_weights,
    crash_mid_epoch_and_resume,
    tiny_dataset,
    train_cfg,
)

OTF = {"enabled": True, "samples_per_epoch": 48, "pool": 3, "prefetch": 2}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """2 shards x 8 samples of 24 px (the validation data and the generation config)."""
    return tiny_dataset(tmp_path_factory.mktemp("otf") / "ds", 2, 8)


def module(dataset: Path, **kw) -> ResidualDataModule:
    args = {"batch_size": 8, "val_shards": "all", "onthefly": OTF, "geometric": "none"}
    return ResidualDataModule(str(dataset), **{**args, **kw})


def test_a_rendered_batch_obeys_the_generators_physics(dataset):
    dm = module(dataset, crop=16)
    b = dm.render_batch(0, torch.device("cpu"))
    assert b["x"].shape == (8, 3, 16, 16) and b["a"].shape == (8, 3)
    assert len(b["meta"]) == 8 and set(b["meta"]["iso"]) <= {400.0, 3200.0}
    # targets: x + R_blur = noise, x + R_noise = blur (float32 rounding)
    assert torch.allclose(b["x"] + b["R_blur"], b["noise"], atol=1e-6)
    assert torch.allclose(b["x"] + b["R_noise"], b["blur"], atol=1e-6)
    # one noise realisation shared by noise and noise_blur where nothing clipped
    ok = (b["noise"] < 1) & (b["x"] < 1) & (b["clean"] < 1) & (b["blur"] < 1)
    n1, n2 = (b["noise"] - b["clean"])[ok], (b["x"] - b["blur"])[ok]
    assert torch.allclose(n1, n2, atol=1e-6)
    # the noise is the sensor model's: standard normal once divided by σ(blur)
    r = ((b["x"] - b["blur"]) / NoiseModel(b["a"], b["b"]).std(b["blur"]))[ok]
    assert abs(float(r.mean())) < 0.05 and abs(float(r.std()) - 1) < 0.05
    # the exposure scales a crop of the original: clean = exposure * frame pixels
    renderer = dm.renderer(torch.device("cpu"))
    frames = {f.name: f.pixels for _, f in renderer.slots}
    m, r0 = b["meta"][0], renderer.margin
    crop = frames[m["source"]][:, m["y"] : m["y"] + 16, m["x"] : m["x"] + 16] * m["exposure"]
    np.testing.assert_allclose(b["clean"][0].numpy(), np.minimum(crop, 1), atol=1e-6)
    assert r0 >= 1


def test_batches_depend_only_on_seed_and_batch_number(dataset):
    a, b = module(dataset), module(dataset)
    for k in range(12):  # a moves its pool along batch by batch
        a.render_batch(k, torch.device("cpu"))
    late_a = a.render_batch(12, torch.device("cpu"))
    late_b = b.render_batch(12, torch.device("cpu"))  # b builds the pool for batch 12 at once
    for key in ("x", "clean", "blur", "noise", "a", "iso"):
        assert torch.equal(late_a[key], late_b[key]), key
    assert list(late_a["meta"]["source"]) == list(late_b["meta"]["source"])
    other = module(dataset, seed=1).render_batch(12, torch.device("cpu"))
    assert not torch.equal(other["x"], late_a["x"])
    # the pool moves on: batch 12 draws from frames 12 * 8 // 8 = 12 .. 14 only
    pool = {f.name for _, f in a.renderer(torch.device("cpu")).slots}
    assert set(late_a["meta"]["source"]) <= pool and len(pool) == 3


def test_augmentation_uses_only_the_lens_symmetries(dataset):
    dm = module(dataset, geometric="lens")
    assert dm.transforms == (0, 6)  # soft_prime: identity and the vertical flip
    r = dm.renderer(torch.device("cpu"))
    assert r.transforms == (0, 6)
    plain = module(dataset, augment=False).render_batch(3, torch.device("cpu"))
    aug = dm.render_batch(3, torch.device("cpu"))
    same = [torch.equal(aug["clean"][i], plain["clean"][i]) for i in range(8)]
    flipped = [torch.equal(aug["clean"][i], plain["clean"][i].flip(-2)) for i in range(8)]
    assert all(s or f for s, f in zip(same, flipped, strict=True)) and any(flipped)


@pytest.mark.slow
def test_onthefly_training_learns_records_what_it_saw_and_resumes_exactly(dataset, tmp_path):
    common = [
        f"data.dir={dataset}",
        "data.val_shards=1",  # its input PSNR is the lower: room to show learning
        "data.onthefly.enabled=true",
        "data.onthefly.samples_per_epoch=48",
        "data.onthefly.pool=4",
        "trainer.max_epochs=8",
        "trainer.deterministic=true",
        "val.panel_every=0",
        "model.width=16",
        "optim.lr=2e-3",
    ]
    full = train(train_cfg(*common, f"run_dir={tmp_path / 'full'}", "record_seen=true"))
    assert full["global_step"] == 8 * 12
    rows = (tmp_path / "full" / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    val = [r.split(",") for r in rows[1:] if r.split(",")[header.index("val/psnr_full")]]
    full_psnr = float(val[-1][header.index("val/psnr_full")])
    inp = float(val[-1][header.index("val/psnr_full_input")])
    # learned from rendered batches only (+0.39 dB here; shards give +0.28..0.62 dB in as
    # many steps over seeds and validation sets)
    assert full_psnr > inp + 0.25, (full_psnr, inp)
    seen = tmp_path / "full" / "seen"
    ids = json.loads((seen / "rank0-epoch1.json").read_text())
    assert ids[0] == [12, 0] and len(ids) == 48  # epoch 1 starts at batch number 12
    meta = [
        json.loads(line) for line in (seen / "rank0-epoch1-meta.jsonl").read_text().splitlines()
    ]
    assert len(meta) == 48 and {m["iso"] for m in meta} <= {400.0, 3200.0}
    assert all(m["source"].startswith("dead_leaves:") for m in meta)
    # stopped after epoch 3 and resumed: the same weights as the uninterrupted run
    train(train_cfg(*common, f"run_dir={tmp_path / 'part'}"), [StopAfterEpoch(3)])
    resumed = train(train_cfg(*common, f"run_dir={tmp_path / 'part'}", "ckpt_path=last"))
    assert resumed["global_step"] == 96
    assert_same_weights(tmp_path / "full", tmp_path / "part")


def test_generator_overrides_change_what_is_rendered(dataset):
    dm = module(dataset, onthefly={**OTF, "generator": {"sensor": {"iso": [6400]}}})
    assert set(dm.render_batch(0, torch.device("cpu"))["meta"]["iso"]) == {6400.0}
    # a setting the shards' stored config lacks because it was at its default (at_max = 0)
    dm = module(dataset, onthefly={**OTF, "generator": {"exposure": {"at_max": 1.0}}})
    assert set(dm.render_batch(0, torch.device("cpu"))["meta"]["exposure"]) == {1.0}
    with pytest.raises(InputError, match=r"generator.exposure.at_mx: not a generator setting"):
        module(dataset, onthefly={**OTF, "generator": {"exposure": {"at_mx": 1.0}}}).render_batch(
            0, torch.device("cpu")
        )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"onthefly": None}, "val_shards = all: only with data.onthefly.enabled=true"),
        ({"onthefly": {**OTF, "pool": 0}}, "data.onthefly.pool = 0"),
        ({"onthefly": {**OTF, "poool": 2}}, "data.onthefly.poool: unknown setting"),
        ({"onthefly": {**OTF, "samples_per_epoch": 4}}, "samples_per_epoch = 4"),
        ({"onthefly": {**OTF, "generator": {"sensor": {"iso": [-5]}}}}, "ISO"),
        ({"onthefly": {**OTF, "generator": {"renderer": "opengl"}}}, "renderer = 'opengl'"),
    ],
)
def test_bad_onthefly_settings_are_refused_in_one_line(dataset, kw, message):
    with pytest.raises(InputError, match=None) as e:
        dm = module(dataset, **kw)
        dm.render_batch(0, torch.device("cpu"))
    assert message in str(e.value) and "\n" not in str(e.value)


@run_if(gpu=True)
def test_onthefly_on_the_gpu_draws_the_same_samples_and_trains(dataset, tmp_path):
    cpu = module(dataset, crop=16).render_batch(5, torch.device("cpu"))
    gpu_a = module(dataset, crop=16).render_batch(5, torch.device("cuda"))
    gpu_b = module(dataset, crop=16).render_batch(5, torch.device("cuda"))
    # the same crops, exposures, ISOs and PSFs on either device (numpy draws) ...
    assert list(cpu["meta"]["seed"]) == list(gpu_a["meta"]["seed"])
    assert torch.equal(cpu["clean"], gpu_a["clean"].cpu())
    assert (cpu["blur"] - gpu_a["blur"].cpu()).abs().max() < 1e-5  # cuFFT rounding
    # ... and reproducible noise on the same kind of device
    assert torch.equal(gpu_a["x"], gpu_b["x"])
    res = train(
        train_cfg(
            f"data.dir={dataset}",
            "data.val_shards=1",
            "data.onthefly.enabled=true",
            "data.onthefly.samples_per_epoch=48",
            "trainer=gpu",
            "trainer.max_epochs=2",
            "perf.channels_last=true",
            f"run_dir={tmp_path}",
        )
    )
    assert res["global_step"] == 24 and res["value"] is not None


def test_a_fused_optimizer_with_clipping_under_mixed_precision_is_refused(dataset, tmp_path):
    # Lightning cannot clip gradients of an optimizer that unscales them itself; found on
    # a GPU, where optim.fused=auto now keeps the multi-tensor AdamW when clipping
    cfg = train_cfg(
        f"data.dir={dataset}",
        f"run_dir={tmp_path}",
        "optim.fused=true",
        "trainer.precision=bf16-mixed",
        "trainer.max_epochs=1",
    )
    with pytest.raises(InputError, match="optim.fused = true: Lightning cannot clip gradients"):
        train(cfg)


def test_photographs_on_the_fly_are_decoded_once_and_the_cache_is_bounded(dataset, tmp_path):
    from PIL import Image

    from data_gen.sources import FolderSource

    rng = np.random.default_rng(0)
    for i in range(3):
        img = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"p{i}.png")
    src = FolderSource(str(tmp_path))
    src.cache_bytes = 2 * 3 * 64 * 80 * 4  # two decoded frames
    a = src.frame(np.random.default_rng(1))
    assert src.frame(np.random.default_rng(1)) is a  # a hit: not decoded again
    for s in range(20):
        src.frame(np.random.default_rng(s))
    assert len(src._cache) == 2 and src._cached <= src.cache_bytes
    # training batches from a folder of photographs instead of the shards' dead leaves
    gen = {
        "source": {
            "kind": "folder",
            "path": str(tmp_path),
            "linearize": True,
            "shrink": 1.0,
            "check": "full",
        }
    }
    dm = module(dataset, onthefly={**OTF, "generator": gen, "cache_gb": 0.01})
    b = dm.render_batch(0, torch.device("cpu"))
    assert {m.split("/")[-1] for m in b["meta"]["source"]} <= {"p0.png", "p1.png", "p2.png"}
    assert dm.renderer(torch.device("cpu")).pipe.source.cache_bytes == int(0.01 * 2**30)


def test_the_fft_deconvolution_path_equals_the_convolution_in_value_and_gradient():
    from residual_train.models import build_model
    from residual_train.models.base import fft_correlate

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 36, generator=g, requires_grad=True)
    w = torch.randn(3, 21, 21, generator=g, requires_grad=True)
    a = torch.nn.functional.conv2d(x, w[:, None], groups=3)
    b = fft_correlate(x, w)
    assert a.shape == b.shape == (2, 3, 20, 16)
    assert (a - b).abs().max() < 1e-4 * a.abs().max()
    ga = torch.autograd.grad(a.square().sum(), (x, w))
    gb = torch.autograd.grad(b.square().sum(), (x, w))
    for u, v in zip(ga, gb, strict=True):
        assert (u - v).abs().max() < 1e-4 * u.abs().max()
    # the model trains through the FFT path and evaluates (and exports) through the conv
    net = build_model({"arch": "unet", "width": 8, "depth": 2, "blocks": 1, "deconv": 21}, 3)
    assert net.deconv_fft
    xi = torch.rand(1, 3, 24, 24, generator=g)
    out_train = net.train()(xi)["blur"]
    out_eval = net.eval()(xi)["blur"]
    assert (out_train - out_eval).abs().max() < 1e-5
    small = build_model({"arch": "unet", "width": 8, "depth": 2, "blocks": 1, "deconv": 5}, 3)
    assert not small.deconv_fft


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_renders_what_an_uninterrupted_one_would(dataset, tmp_path):
    crash_mid_epoch_and_resume(
        [
            f"data.dir={dataset}",
            "data.val_shards=1",
            "data.onthefly.enabled=true",
            "data.onthefly.samples_per_epoch=48",
        ],
        tmp_path,
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.onthefly=true", "data.onthefly = True: a mapping"),
        ("data.onthefly.pool=abc", "data.onthefly.pool = 'abc': an integer >= 1"),
        ("+data.onthefly.generator.layout=rggb", "renders channels 4"),
    ],
)
def test_bad_onthefly_config_stops_before_training(dataset, tmp_path, override, message):
    cfg = train_cfg(
        f"data.dir={dataset}", "data.onthefly.enabled=true", override, f"run_dir={tmp_path}"
    )
    with pytest.raises(InputError, match=None) as e:
        train(cfg)
    assert message in str(e.value), str(e.value)
    assert not (tmp_path / "checkpoints").exists()
