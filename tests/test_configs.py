"""Every preset in conf/ composes, resolves and builds what it names (no training, no I/O)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import CONF, compose_cfg, shared


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(root: Path, name: str, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(root), version_base=None):
        cfg = compose(name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def _missing(d, where: str = "") -> list[str]:
    """Keys still ``???`` after composition."""
    if isinstance(d, dict):
        return [m for k, v in d.items() for m in _missing(v, f"{where}{k}.")]
    return [where.rstrip(".")] if d == "???" else []


GEN_GROUPS = [(g, o) for g in ("source", "sensor", "lens", "dataset") for o in _options(g)]
TRAIN_GROUPS = [
    (g, o)
    for g in ("data", "model", "trainer", "logger", "callbacks", "experiment")
    for o in _options(g)
]


@pytest.mark.parametrize(("group", "option"), GEN_GROUPS, ids=[f"{g}={o}" for g, o in GEN_GROUPS])
@pytest.mark.slow
def test_every_generator_preset_composes_and_resolves(group, option):
    extra = []
    if (group, option) == ("sensor", "darktable"):
        extra = [f"sensor.profile={shared('darktable', 'noiseprofiles.json')}"]
    if group == "dataset":  # a recipe sets its own source; keep only the small sizes
        extra = ["shards=1", "samples_per_shard=4", "patch_size=16", "lens.size=7"]
        cfg = compose_cfg(f"{group}={option}", *extra, tiny=False)
    else:
        cfg = compose_cfg(f"{group}={option}", *extra)
    assert cfg["seed"] is not None and cfg["patch_size"] > 0
    # only inputs a user must give (a folder, a file) may stay unset
    missing = set(_missing(cfg))
    assert missing <= {"source.dir", "source.path", "lens.path", "out_dir"}, missing
    if missing - {"out_dir"}:
        return
    # presets that read the project's shared data (BSD400, a measured lens) need it here
    text = repr(cfg)
    if "../shared/data" in text:
        shared()
    from data_gen.generate import build_pipeline, iter_shard

    # one batch, twice: the same bytes, finite, on the stored scale (0 = black, 1 = white)
    a, b = (next(iter_shard(build_pipeline(cfg), 0)) for _ in range(2))
    from data_gen.chain import stored_names

    assert set(a[0]) == set(stored_names(cfg.get("components") or ["blur", "noise"]))
    for key, arr in a[0].items():
        assert arr.tobytes() == b[0][key].tobytes(), f"{group}={option}: {key} not deterministic"
        assert np.isfinite(arr).all() and arr.max() <= 1.0 and arr.min() > -1.0, key
    for field in a[1].dtype.names:  # per-sample metadata (focus is NaN for fixed-focus lenses)
        x, y = a[1][field], b[1][field]
        same = list(x) == list(y) if x.dtype == object else np.array_equal(x, y, equal_nan=True)
        assert same, f"{group}={option}: meta.{field} not deterministic"


@pytest.mark.parametrize(
    ("group", "option"), TRAIN_GROUPS, ids=[f"{g}={o}" for g, o in TRAIN_GROUPS]
)
def test_every_training_preset_composes_and_builds(group, option, tmp_path):
    import pytorch_lightning as pl
    from hydra.utils import get_method, instantiate

    from residual_train.models import resolve_heads
    from residual_train.training.settings import check_train_config
    from residual_train.training.train import build_callbacks, build_loggers, monitor_metric

    cfg = _compose(CONF, "train", [f"{group}={option}", "data.dir=unused"])
    assert not _missing(cfg), _missing(cfg)
    # the trainer preset holds only real Trainer arguments
    assert cfg["trainer"]["_target_"] == "pytorch_lightning.Trainer"
    args = set(cfg["trainer"]) - {"_target_"}
    unknown = args - set(inspect.signature(pl.Trainer.__init__).parameters)
    assert not unknown, f"trainer={cfg['trainer']}: not Trainer arguments: {unknown}"
    # every group is typed (one line naming a bad key) and its _target_ builds what it names
    settings = check_train_config(cfg)
    assert isinstance(get_method(cfg["data"]["_target_"]), type)  # the data module (reads files)
    sigma_map = settings.data.sigma_map
    torch.manual_seed(settings.seed)
    heads = resolve_heads(cfg["model"]["heads"])  # auto: a schema-v1 dataset's
    model = {**cfg["model"], "heads": heads, "sigma_map": sigma_map}
    if model.get("field_kernels"):  # training sets the bank's size from the dataset
        model["field_positions"] = 4
    net = instantiate(model, channels=3)
    net = net.eval()
    assert net.heads == heads
    # a forward step on an odd-sized input: one finite residual per head, input's shape
    x = torch.rand(1, 3, 21, 27) * 0.5
    sigma = torch.full_like(x, 0.01) if sigma_map else None
    field = net.field_of(torch.tensor([2]), 21, 27) if net.field_kernels else None
    with torch.no_grad():
        out = net(x, sigma, field)
    assert list(out) == list(heads)
    assert all(r.shape == x.shape and torch.isfinite(r).all() for r in out.values())
    # the criterion, the optimiser (a partial: called with the parameters) and the schedule
    # (a partial: called with the optimiser) step once
    criterion = instantiate(cfg["loss"], heads=net.heads, _convert_="all")
    batch = {"x": x, "signal": x, "a": torch.full((1, 3), 1e-4), "b": torch.full((1, 3), 1e-6)}
    batch.update({f"R_{h}": torch.zeros_like(x) for h in heads})
    net.train()
    loss = criterion(net(x, sigma, field), batch)["total"]
    assert torch.isfinite(loss)
    o = settings.optim
    opt = instantiate(o.optimizer_kwargs(), _convert_="all")(net.parameters(), fused=False)
    assert isinstance(opt, torch.optim.Optimizer) and opt.param_groups[0]["lr"] == o.lr
    sched = instantiate(o.scheduler.model_dump(by_alias=True), _convert_="all")(
        opt, total_steps=10, warmup_steps=o.warmup_steps, min_lr_ratio=o.min_lr_ratio
    )
    loss.backward()
    opt.step()
    sched.step()
    assert 0 < opt.param_groups[0]["lr"] <= o.lr
    callbacks = build_callbacks(cfg, tmp_path, monitor_metric(cfg))
    assert all(isinstance(c, pl.Callback) for c in callbacks.values())
    tc = cfg["trainer"]
    if tc["accelerator"] == "cpu" and tc["devices"] == 1 and tc["precision"] != "auto":
        trainer = instantiate(tc, default_root_dir=str(tmp_path), logger=False)
        assert isinstance(trainer, pl.Trainer) and trainer.max_steps == tc["max_steps"]
    if group == "logger" and option == "wandb":
        pytest.importorskip("wandb")
    loggers = build_loggers(cfg, tmp_path) if group != "logger" or option != "wandb" else []
    if group == "logger":
        assert len(loggers) == (0 if option in ("none", "wandb") else 1)


APPS = sorted(p.stem for p in (CONF / "apps").glob("*.yaml"))


@pytest.mark.parametrize("app", APPS)
def test_every_app_config_composes_and_names_only_what_the_user_must_give(app):
    cfg = _compose(CONF / "apps", app, [])
    for key in _missing(cfg):
        # a required key is documented on its own line of the file
        line = next(
            ln
            for ln in (CONF / "apps" / f"{app}.yaml").read_text().splitlines()
            if ln.startswith(f"{key}:")
        )
        assert "#" in line, f"conf/apps/{app}.yaml: {key} is required but undocumented"


def test_train_presets_share_the_default_trainer_keys():
    base = _compose(CONF, "train", ["trainer=default"])["trainer"]
    for option in _options("trainer"):
        t = _compose(CONF, "train", [f"trainer={option}"])["trainer"]
        assert set(base) <= set(t), f"trainer={option} lacks {set(base) - set(t)}"
