"""Training: data loading, models, Lightning module, entry point (CPU, tiny sizes)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from data_gen.core.errors import InputError
from data_gen.shards import read_manifest
from residual_train.data import EpochSampler, ResidualDataModule, ShardDataset
from residual_train.models import build_model
from residual_train.training.lit import ResidualModule
from residual_train.training.train import train
from tests.helpers.cli import run_module
from tests.helpers.training import (
    CrashAtStep,
    StopAfterEpoch,
    crash_mid_epoch_and_resume,
    tiny_dataset,
    train_cfg,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """4 shards x 16 samples of 24 px patches (float32)."""
    return tiny_dataset(tmp_path_factory.mktemp("train") / "ds", 4, 16)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300):
    """``python -m residual_train *args`` (training's command line)."""
    return run_module("residual_train", *args, env=env, timeout=timeout)


# ---- data ---------------------------------------------------------------------------------
def test_batches_carry_inputs_targets_and_identical_augmentation(dataset):
    dm = ResidualDataModule(str(dataset), crop=16, batch_size=4, val_shards=1)
    assert [s.index for s in dm.train_shards] == [0, 1, 2] and len(dm.val_shards) == 1
    ds = dm.dataset(train=True)
    item = ds[(5, 1234)]
    assert item["x"].shape == (3, 16, 16)
    # targets from the stored patches, after the same crop/flip/rotation
    torch.testing.assert_close(item["R_blur"], item["noise"] - item["x"])
    torch.testing.assert_close(item["R_noise"], item["blur"] - item["x"])
    # R_b + R_n recovers clean wherever nothing clipped
    torch.testing.assert_close(
        item["x"] + item["R_blur"] + item["R_noise"], item["clean"], atol=2e-6, rtol=0
    )
    # same seed -> same augmentation; another seed -> another crop or orientation
    torch.testing.assert_close(ds[(5, 1234)]["x"], item["x"])
    assert any(not torch.equal(ds[(5, s)]["x"], item["x"]) for s in range(5))


def test_augmentation_flips_and_turns_only_by_the_lens_symmetries(dataset):
    from data_gen.optics.symmetry import ALL, dihedral

    dm = ResidualDataModule(str(dataset), crop=24, batch_size=4)  # soft_prime: coma along x
    assert dm.transform_names == ["identity", "flip-y"]
    ds = dm.dataset(train=True)
    with h5py.File(dataset / dm.train_shards[0].name) as f:
        stored = f["noise_blur"][3]
    seen = set()
    for seed in range(40):
        x = ds[(3, seed)]["x"].numpy()  # crop = patch: only the transform varies
        match = [t for t in ALL if np.array_equal(x, dihedral(stored, t))]
        assert match and match[0] in (0, 6), match
        seen.add(match[0])
    assert seen == {0, 6}
    assert ResidualDataModule(str(dataset), geometric="all").transforms == ALL
    assert ResidualDataModule(str(dataset), geometric="none").transforms == (0,)
    with pytest.raises(InputError, match="data.geometric = 'sideways': one of lens, all, none"):
        ResidualDataModule(str(dataset), geometric="sideways")


def test_epoch_sampler_splits_ranks_disjointly_and_reshuffles():
    n = 50
    a = [i for i, _ in EpochSampler(n, seed=3, rank=0, world=2)]
    b = [i for i, _ in EpochSampler(n, seed=3, rank=1, world=2)]
    assert len(a) == len(b) == 25 and set(a).isdisjoint(b) and set(a) | set(b) == set(range(n))
    s = EpochSampler(n, seed=3)
    e0 = list(s)
    s.set_epoch(1)
    assert [i for i, _ in e0] != [i for i, _ in s] and sorted(i for i, _ in s) == list(range(n))
    assert list(EpochSampler(n, seed=3)) == e0  # deterministic


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.slow
def test_two_workers_read_the_same_data_as_the_main_process(dataset, method):
    dm = ResidualDataModule(str(dataset), crop=16, batch_size=4, num_workers=2, start_method=method)
    dm.dataset(True)[(0, 0)]  # a handle opened in the parent before the workers start
    ref = ResidualDataModule(str(dataset), crop=16, batch_size=4, num_workers=0)
    got = list(dm.train_dataloader())
    want = list(ref.train_dataloader())
    assert len(got) == len(want) == 12
    for g, w in zip(got, want, strict=True):
        for k in ("x", "R_blur", "R_noise", "id"):
            torch.testing.assert_close(g[k], w[k], rtol=0, atol=0)


def test_dataset_pickles_without_open_handles(dataset):
    import pickle

    ds = ShardDataset(dataset, read_manifest(dataset).shards[:1], 16, False)
    ds[(0, 0)]
    assert ds._files
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._files == {}
    torch.testing.assert_close(clone[(3, 0)]["x"], ds[(3, 0)]["x"])


# ---- models -------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["unet", "nafnet"])
def test_models_take_any_size_and_return_one_residual_per_head(arch):
    m = build_model({"arch": arch, "heads": ["blur", "noise"], "width": 8, "depth": 3}, 3)
    x = torch.randn(2, 3, 29, 42)
    out = m(x)
    assert set(out) == {"blur", "noise"} and all(v.shape == x.shape for v in out.values())
    # heads start at zero: the untrained network corrects nothing
    assert all(v.abs().max() == 0 for v in out.values())
    restored = m.restore(x)
    torch.testing.assert_close(restored["blur"], x)
    cond = build_model(
        {"arch": arch, "heads": ["noise"], "width": 8, "depth": 2, "sigma_map": True}, 3
    )
    with pytest.raises(ValueError, match="sigma"):
        cond(x)
    assert cond(x, torch.rand_like(x))["noise"].shape == x.shape


def test_unknown_head_or_arch_is_refused():
    with pytest.raises(InputError, match="'haze' is not a component of the data"):
        build_model({"arch": "unet", "heads": ["blur", "haze"]}, 3)
    # a head for a component the dataset lacks
    with pytest.raises(InputError, match=r"'fog' is not a component of the data \(blur, noise\)"):
        build_model({"arch": "unet", "heads": ["blur", "fog"]}, 3, ("blur", "noise"))
    assert build_model({"arch": "unet", "heads": "auto"}, 3, ("fog", "noise")).heads == [
        "fog",
        "noise",
    ]
    with pytest.raises(InputError, match="model.arch = 'resnet'"):
        build_model({"arch": "resnet"}, 3)


def test_init_from_takes_the_trunk_and_shared_heads_and_refuses_another_trunk(tmp_path):
    from safetensors.torch import save_file

    from residual_train.models.weights import init_from

    src = build_model({"arch": "unet", "heads": ["blur", "noise"], "width": 8, "depth": 2}, 3)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, tmp_path / "w.safetensors")
    dst = build_model(
        {"arch": "unet", "heads": ["fog", "blur"], "width": 8, "depth": 2}, 3, ("fog", "blur")
    )
    got = init_from(dst, tmp_path / "w.safetensors")
    assert got == {"kept": ["blur"], "new": ["fog"], "dropped": ["noise"]}
    theirs, mine = src.state_dict(), dst.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine if not k.startswith("out.fog"))
    x = torch.rand(1, 3, 16, 16)
    assert dst(x)["fog"].abs().max() == 0  # a new head corrects nothing yet
    torch.testing.assert_close(dst(x)["blur"], src(x)["blur"])
    wider = build_model({"arch": "unet", "heads": ["blur"], "width": 16, "depth": 2}, 3)
    with pytest.raises(InputError, match=r"another network than model\.\* \(\d+ tensors differ"):
        init_from(wider, tmp_path / "w.safetensors")
    with pytest.raises(InputError, match="no such weights file"):
        init_from(dst, tmp_path / "nowhere")


@pytest.mark.slow
@pytest.mark.parametrize("heads", [["blur", "noise"], ["blur"], ["noise"]])
def test_a_model_overfits_one_fixed_batch(dataset, heads):
    torch.manual_seed(0)
    dm = ResidualDataModule(str(dataset), crop=16, batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    module = ResidualModule(
        {"arch": "unet", "heads": heads, "width": 16, "depth": 2}, 3, {"type": "l2"}, {}, {}
    )
    opt = torch.optim.Adam(module.parameters(), lr=2e-3)
    first = None
    for _ in range(300):  # at most: it stops once the loss is a tenth of the first
        loss = module.losses(batch)["total"]
        first = first if first is not None else loss.item()
        if loss.item() < first / 10:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10, (first, loss.item())


def test_image_and_residual_domain_losses_agree_for_pointwise_losses(dataset):
    dm = ResidualDataModule(str(dataset), crop=16, batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    net = {"arch": "unet", "heads": ["blur", "noise"], "width": 8, "depth": 2}
    a = ResidualModule(net, 3, {"type": "l1", "domain": "residual"}, {}, {})
    b = ResidualModule(net, 3, {"type": "l1", "domain": "image"}, {}, {})
    b.load_state_dict(a.state_dict())
    for p in a.net.out.parameters():
        torch.nn.init.normal_(p, std=0.1)
    b.load_state_dict(a.state_dict())
    la, lb = a.losses(batch), b.losses(batch)
    torch.testing.assert_close(la["total"], lb["total"], atol=1e-6, rtol=1e-5)


# ---- training runs ------------------------------------------------------------------------
@pytest.mark.slow
def test_training_run_writes_checkpoints_logs_panels_and_beats_the_input(dataset, tmp_path):
    cfg = train_cfg(
        f"data.dir={dataset}",
        f"run_dir={tmp_path}",
        "trainer.max_epochs=8",
        "model.width=16",
        "optim.lr=2e-3",
        "val.panel_every=2",
    )
    res = train(cfg)
    assert res["monitor"] == "val/psnr_full" and res["global_step"] == 8 * 12
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "last.ckpt" in names and any(n.startswith("best-") for n in names)
    ck = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ck["global_step"] == 96
    rows = (tmp_path / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    for col in (
        "val/psnr_blur",
        "val/psnr_noise",
        "val/psnr_full",
        "val/psnr_full/iso200-800",
        "val/psnr_full/iso3200-inf",
        "train/loss",
    ):
        assert col in header
    last = [r.split(",") for r in rows[1:] if r.split(",")[header.index("val/psnr_full")]][-1]
    full = float(last[header.index("val/psnr_full")])
    inp = float(last[header.index("val/psnr_full_input")])
    assert full > inp + 0.5, (full, inp)  # learned something real in 96 steps
    assert len(list((tmp_path / "panels").glob("*.png"))) == 4  # epochs 0, 2, 4, 6
    saved = (tmp_path / "config.yaml").read_text()
    assert "psnr" not in saved and f"dir: {dataset}" in saved


def test_a_run_ending_between_validations_keeps_its_final_state(dataset, tmp_path):
    # 12 steps an epoch, validation (and Lightning's own last.ckpt) every 4: steps 4, 8, 12
    cfg = train_cfg(
        f"data.dir={dataset}",
        f"run_dir={tmp_path}",
        "trainer.max_epochs=-1",
        "trainer.max_steps=14",
        "+trainer.val_check_interval=4",
        "model.width=8",
    )
    assert train(cfg)["global_step"] == 14
    ck = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ck["global_step"] == 14  # not 12, the last validation's state


@pytest.mark.slow
def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(dataset, tmp_path):
    common = [
        f"data.dir={dataset}",
        "trainer.max_epochs=4",
        "trainer.deterministic=true",
        "val.panel_every=0",
    ]
    full = train(train_cfg(*common, f"run_dir={tmp_path / 'full'}"))
    part = train(train_cfg(*common, f"run_dir={tmp_path / 'part'}"), [StopAfterEpoch(1)])
    assert part["global_step"] == 24
    # a second attempt dies mid-epoch after logging steps past its checkpoint (step 36)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(
            train_cfg(*common, f"run_dir={tmp_path / 'part'}", "ckpt_path=last"), [CrashAtStep(40)]
        )
    resumed = train(train_cfg(*common, f"run_dir={tmp_path / 'part'}", "ckpt_path=last"))
    assert resumed["global_step"] == full["global_step"] == 48
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 48
    # the CSV log continued in the same file, and holds every training step once (the
    # crashed attempt's steps after its checkpoint were dropped when it was resumed)
    import csv

    with open(tmp_path / "part" / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows if r["train/loss"]]
    assert steps == list(range(48)), steps


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_on_disjoint_samples(dataset, tmp_path):
    r = run_cli(
        f"data.dir={dataset}",
        f"run_dir={tmp_path}",
        "experiment=tiny",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "record_seen=true",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert sum(ln.startswith("{") for ln in r.stdout.splitlines()) == 1  # rank 0 reports
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["global_step"] == 2 * 6  # 48 train samples / (2 ranks x 4)
    for epoch in (0, 1):
        r0 = {
            tuple(x)
            for x in json.loads((tmp_path / "seen" / f"rank0-epoch{epoch}.json").read_text())
        }
        r1 = {
            tuple(x)
            for x in json.loads((tmp_path / "seen" / f"rank1-epoch{epoch}.json").read_text())
        }
        assert len(r0) == len(r1) == 24 and r0.isdisjoint(r1)
        assert {s for s, _ in r0 | r1} == {0, 1, 2}
    assert [p.name for p in tmp_path.parent.iterdir() if p.name.startswith(tmp_path.name)] == [
        tmp_path.name
    ]


@pytest.mark.slow
def test_multirun_gives_each_job_its_own_run_dir_and_result(dataset, tmp_path):
    r = run_cli(
        "-m",
        f"data.dir={dataset}",
        "experiment=tiny",
        "trainer.max_epochs=1",
        "val.panel_every=0",
        "optim.lr=1e-3,3e-3",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    results = [json.loads((tmp_path / str(i) / "result.json").read_text()) for i in (0, 1)]
    assert [Path(x["run_dir"]).name for x in results] == ["0", "1"]
    assert all(np.isfinite(x["value"]) for x in results)
    lrs = [yaml_load(tmp_path / str(i) / "config.yaml")["optim"]["lr"] for i in (0, 1)]
    assert lrs == [1e-3, 3e-3]


def yaml_load(p: Path) -> dict:
    import yaml

    return yaml.safe_load(p.read_text())


@pytest.mark.slow
def test_wandb_offline_run_keeps_its_id_across_resume(dataset, tmp_path):
    pytest.importorskip("wandb")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)}
    args = [
        f"data.dir={dataset}",
        f"run_dir={tmp_path / 'run'}",
        "logger=wandb",
        "trainer.max_epochs=1",
    ]
    r = run_cli(*args, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    run_id = (tmp_path / "run" / "wandb_run_id").read_text().strip()
    runs = list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1
    # the offline record log (protobuf) holds each logged key and its JSON value as text
    log = (runs[0] / f"run-{run_id}.wandb").read_bytes()
    for key in (b"val/psnr_full", b"val/psnr_blur", b"train/loss", b"val/panel"):
        assert key in log, key
    r = run_cli(*args[:-1], "trainer.max_epochs=2", "ckpt_path=last", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "wandb_run_id").read_text().strip() == run_id
    assert len(list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}"))) == 2


# ---- bad input ----------------------------------------------------------------------------
def _damage(dataset: Path, tmp: Path, case: str) -> tuple[list[str], str]:
    d = tmp / "ds"
    shutil.copytree(dataset, d)
    if case == "missing manifest":
        (d / "manifest.json").unlink()
        return [f"data.dir={d}"], "no manifest"
    if case == "corrupt manifest":
        (d / "manifest.json").write_text('{"shards": [')
        return [f"data.dir={d}"], "not valid JSON"
    if case == "checksum mismatch":
        p = d / "shard-00002-of-00004.h5"
        raw = bytearray(p.read_bytes())
        raw[-100] ^= 1
        p.write_bytes(bytes(raw))
        return [f"data.dir={d}"], "shard-00002-of-00004.h5: sha256 does not match"
    if case == "crop larger than stored":
        return [f"data.dir={d}", "data.crop=32"], "data.crop = 32: the dataset's patches are 24 px"
    if case == "unknown head":
        return [f"data.dir={d}", "model.heads=[blur,haze]"], "'haze' is not a component of the data"
    if case == "resume without checkpoint":
        return [f"data.dir={d}", "ckpt_path=last"], "nothing to resume"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing manifest",
        "corrupt manifest",
        "checksum mismatch",
        "crop larger than stored",
        "unknown head",
        "resume without checkpoint",
    ],
)
def test_bad_input_stops_before_training_starts(dataset, tmp_path, case):
    overrides, needle = _damage(dataset, tmp_path, case)
    run = tmp_path / "run"
    with pytest.raises(InputError) as e:
        train(train_cfg(*overrides, f"run_dir={run}"))
    assert needle in str(e.value)
    assert not (run / "checkpoints").exists()


def test_cli_reports_bad_input_in_one_line(tmp_path):
    r = run_cli(
        f"data.dir={tmp_path / 'nothing'}", f"run_dir={tmp_path / 'run'}", "experiment=tiny"
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error:" in r.stderr and "no manifest" in r.stderr


def test_real_configs_compose_and_nafnet_trains(dataset, tmp_path):
    cfg = train_cfg("experiment=default", f"data.dir={dataset}")
    assert cfg["model"]["width"] == 32 and cfg["trainer"]["max_epochs"] == 20
    res = train(
        train_cfg(
            f"data.dir={dataset}",
            f"run_dir={tmp_path}",
            "model=nafnet",
            "model.width=8",
            "model.depth=2",
            "trainer.max_epochs=1",
        )
    )
    assert np.isfinite(res["value"])


def test_ckpt_path_auto_picks_the_newest_checkpoint(tmp_path):
    from residual_train.training.train import resolve_ckpt

    assert resolve_ckpt("auto", tmp_path) is None  # nothing yet: a fresh start
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(b"x")
    assert resolve_ckpt("auto", tmp_path) == str(last)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"x")
    os.utime(last, ns=(1, 1))  # the requeue checkpoint is newer
    assert resolve_ckpt("auto", tmp_path) == str(hpc)


# ---- model and loss options of the shipped recipe -----------------------------------------
def test_deconv_path_starts_as_the_wiener_inverse_of_the_datasets_psf(dataset):
    """Initialised from the PSF bank stored in the shards, the linear path alone undoes the
    blur of a noise-free patch: the blur head's starting point is L⊛x − x ≈ S − B."""
    dm = ResidualDataModule(str(dataset), crop=24, batch_size=4)
    psf = dm.mean_psf()
    assert psf.shape[0] == 3 and np.allclose(psf.sum(axis=(1, 2)), 1, atol=1e-5)
    net = build_model({"arch": "unet", "width": 8, "depth": 2, "blocks": 1, "deconv": 15}, 3)
    net.init_deconv(psf)
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        r_blur = net(batch["blur"])["blur"]  # heads start at zero: only the linear path
    e = 6  # the edge band depends on light from outside the patch
    inner = (..., slice(e, -e), slice(e, -e))
    err = (batch["blur"] + r_blur - batch["clean"])[inner].pow(2).mean()
    err_blurred = (batch["blur"] - batch["clean"])[inner].pow(2).mean()
    assert err < err_blurred / 4


@pytest.mark.parametrize(
    "options",
    [
        ["model.deconv_base=input", "model.normalize=none"],
        ["model.deconv_base=denoised", "model.normalize=sigma"],
    ],
)
def test_deconv_model_trains_exports_and_keeps_parity(dataset, tmp_path, options):
    from residual_train.release.export import export

    cfg = train_cfg(
        f"data.dir={dataset}",
        f"run_dir={tmp_path / 'run'}",
        "model.deconv=9",
        *options,
        "data.sigma_map=true",
        "loss.sigma_units=[blur,noise]",
        "loss.border=3",
        "trainer.max_epochs=1",
        "val.panel_every=0",
    )
    result = train(cfg)
    assert np.isfinite(result["value"])
    card = export(tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "exp")
    assert card["model"]["deconv"] == 9 and card["inputs"] == ["x", "sigma"]
    assert card["parity"]["max_abs_diff"] <= 1e-4


def test_sigma_unit_and_border_losses_measure_what_they_say(dataset):
    dm = ResidualDataModule(str(dataset), crop=24, batch_size=8)
    batch = next(iter(dm.val_dataloader()))
    base = {"type": "l2", "domain": "residual", "weights": {"blur": 1, "noise": 1}}
    mods = {
        name: ResidualModule({"arch": "unet", "width": 4, "depth": 1, "blocks": 1}, 3, loss, {}, {})
        for name, loss in {
            "plain": base,
            "sigma": {**base, "sigma_units": ["noise"]},
            "border": {**base, "border": 4},
        }.items()
    }
    for m in mods.values():  # identical (zero-output) predictions: R̂ = 0
        m.net.load_state_dict(mods["plain"].net.state_dict())
    losses = {k: m.losses(batch) for k, m in mods.items()}
    rn = batch["R_noise"]
    torch.testing.assert_close(losses["plain"]["noise"], rn.pow(2).mean())
    from data_gen.noise import NoiseModel

    sigma = NoiseModel(batch["a"], batch["b"]).std(batch["blur"])
    torch.testing.assert_close(losses["sigma"]["noise"], (rn / sigma).pow(2).mean())
    # a zero prediction of -n/σ has a loss of about one σ² per pixel (unclipped pixels)
    assert 0.7 < float(losses["sigma"]["noise"].detach()) < 1.3
    torch.testing.assert_close(
        losses["border"]["blur"], batch["R_blur"][..., 4:-4, 4:-4].pow(2).mean()
    )
    with pytest.raises(InputError, match="loss.sigma_units"):
        ResidualModule(
            {"arch": "unet", "width": 4, "depth": 1}, 3, {**base, "sigma_units": ["fog"]}, {}, {}
        )


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_continues_the_epoch_where_it_stopped(dataset, tmp_path):
    crash_mid_epoch_and_resume([f"data.dir={dataset}", "record_seen=true"], tmp_path)
    # the resumed epoch trained on the samples the interrupted one had not reached
    full = json.loads((tmp_path / "full" / "seen" / "rank0-epoch1.json").read_text())
    part = json.loads((tmp_path / "part" / "seen" / "rank0-epoch1.json").read_text())
    assert part == full[6 * 4 :]


def test_export_keeps_a_head_subset_and_refuses_one_the_deconvolution_needs():
    from residual_train.release.export import keep_heads

    cfg = {"arch": "unet", "heads": ["fog", "blur", "noise"], "width": 8, "depth": 2}
    net = build_model({**cfg, "deconv": 5, "deconv_base": "denoised"}, 3, ("fog", "blur", "noise"))
    x = torch.rand(1, 3, 16, 16)
    before = net(x)
    assert keep_heads(net, None) == [] and net.heads == ["fog", "blur", "noise"]
    assert keep_heads(net, ["blur", "noise"]) == ["fog"]
    after = net(x)
    assert set(after) == {"blur", "noise"} and "fog" not in dict(net.named_children())["out"]
    torch.testing.assert_close(after["blur"], before["blur"])
    with pytest.raises(InputError, match="keep noise"):
        keep_heads(net, ["blur"])
    with pytest.raises(InputError, match="the checkpoint's heads are"):
        keep_heads(net, ["relight"])


def test_the_optimiser_and_its_schedule_are_swapped_in_the_config():
    """``optim._target_`` is any optimiser (its further keys its own arguments; betas=null
    for one without), ``optim.scheduler._target_`` any schedule taking the same arguments;
    the default schedule warms up linearly, then falls along a cosine to min_lr_ratio."""
    from hydra.utils import instantiate

    from residual_train.training.lit import warmup_cosine
    from residual_train.training.settings import OptimSettings, completed, parse

    net = build_model({"arch": "unet", "width": 4, "depth": 1, "blocks": 1}, 3)
    o = parse(
        OptimSettings,
        completed("optim", {"_target_": "torch.optim.SGD", "betas": None, "momentum": 0.9}),
        "optim",
    )
    opt = instantiate(o.optimizer_kwargs(), _convert_="all")(net.parameters(), fused=False)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=4, min_lr_ratio=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lr = o.lr
    assert lrs[:4] == pytest.approx([lr / 4, lr / 2, 3 * lr / 4, lr])
    assert lrs[4] == pytest.approx(lr) and lrs[10:] == pytest.approx([0.1 * lr] * 2)
    with pytest.raises(InputError, match="optim.betas = \\[0.9, 2\\]: a number from 0 to 1"):
        parse(OptimSettings, completed("optim", {"betas": [0.9, 2]}), "optim")
