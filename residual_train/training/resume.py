"""What a resume resumes: the checkpoint is a residual-train checkpoint whose weights fit
the network this config builds, and the config is the run's own, but for the changes the
user asked for (``resume.allow_changes=[...]``, recorded in ``RUN_DIR/resumes.jsonl``).

A resumed run with another seed, loss, optimiser, data or network is neither the old run
nor a new one; such a change is refused in one line unless it is allowed by name.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from data_gen.core.errors import InputError, require
from data_gen.core.paths import written_atomically
from data_gen.shards import read_mapping
from residual_train.training.checkpoint import BadCheckpoint, HyperParameters, ResumableCheckpoint

# what a run is: a change of any of these makes it another run
IDENTITY = ("seed", "model", "loss", "optim", "data", "trainer.gradient_clip_val")
IDENTITY += ("trainer.accumulate_grad_batches",)
# ... except how the data is read, which never changes what is trained on
HOW_DATA_IS_READ = (
    "data.num_workers",
    "data.start_method",
    "data.verify",
    "data.val_batch_size",
    "data.onthefly.threads",
    "data.onthefly.prefetch",
    "data.onthefly.cache_gb",
)


@dataclass(frozen=True)
class CheckpointInfo:
    """The parts of a checkpoint a resume needs: the step it was saved at, the module's
    hyper-parameters and the shapes of its weights."""

    global_step: int
    hparams: HyperParameters
    shapes: dict[str, tuple]


# the order a resume names the entries a checkpoint lacks in
_ENTRIES = ("global_step", "state_dict", "hyper_parameters")


def checkpoint_info(path: str) -> CheckpointInfo:
    """The parts of a checkpoint a resume needs (:class:`CheckpointInfo`); loaded without
    pickle. A file that is not a residual-train checkpoint is an :class:`InputError` naming
    it."""
    import torch

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises several types for a bad file
        reason = " ".join(str(e).split())[:200]
        raise InputError(f"ckpt_path: {path} is not a loadable checkpoint ({reason})") from None
    try:
        rec = ResumableCheckpoint.of(ck)
    except BadCheckpoint as e:
        missing = [k for k in _ENTRIES if k in e.missing]
        if missing or e.part is None:
            raise InputError(
                f"ckpt_path: {path} is not a residual-train training checkpoint (it lacks "
                f"{', '.join(missing) or 'everything'})"
            ) from None
        require(
            e.part != "hyper_parameters", f"ckpt_path: {path}: its hyper_parameters lack the model"
        )
        raise InputError(
            f"ckpt_path: {path} is not a residual-train training checkpoint (its {e.part} is "
            "not what training writes)"
        ) from None
    shapes = {k: tuple(v.shape) for k, v in rec.state_dict.items()}
    return CheckpointInfo(rec.global_step, rec.hyper_parameters, shapes)


def flat(cfg, prefix: str = "") -> dict:
    """``{"a.b.c": value}`` of a nested mapping (lists are values)."""
    if not isinstance(cfg, dict):
        return {prefix: cfg}
    out = {}
    for k, v in cfg.items():
        out.update(flat(v, f"{prefix}{k}." if isinstance(v, dict) and v else f"{prefix}{k}"))
    return out


def _under(key: str, names) -> bool:
    return any(key == n or key.startswith(n + ".") for n in names)


def identity_changes(old: dict, new: dict) -> dict[str, list]:
    """``{key: [old, new]}`` of the settings in :data:`IDENTITY` of the old run that differ
    in the new config (settings the old config lacks came later, at their defaults)."""
    a, b = flat(old), flat(new)
    keys = sorted(k for k in a if _under(k, IDENTITY) and not _under(k, HOW_DATA_IS_READ))
    # a setting the old run's config lacks came with a later version, at its default
    return {k: [a[k], b.get(k)] for k in keys if a[k] != b.get(k)}


def check_weights_fit(path: str, info: CheckpointInfo, model_cfg: dict, module) -> None:
    """The checkpoint's weights fit ``module``: else one line naming the model settings
    the checkpoint was trained with (``model.width = 8, not 16``)."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if want == info.shapes:
        return
    trained = info.hparams.model
    differ = [
        f"model.{k} = {trained.get(k)!r}, not {model_cfg.get(k)!r}"
        for k in sorted(set(trained) | set(model_cfg))
        if trained.get(k) != model_cfg.get(k)
    ]
    raise InputError(
        f"ckpt_path: {path} was trained with "
        + ("; ".join(differ) if differ else "another network")
        + ": its weights do not fit this one (resume with the run's own model settings, "
        "or start a new run_dir)"
    )


def saved_config(run_dir: Path, ckpt: str) -> tuple[Path | None, dict | None]:
    """The config the checkpoint's run last ran with: ``config.resumed.yaml`` (the latest
    resume) or ``config.yaml`` beside the checkpoint's run, else this run_dir's."""
    for d in dict.fromkeys([Path(ckpt).resolve().parent.parent, run_dir]):
        for name in ("config.resumed.yaml", "config.yaml"):
            if (d / name).is_file():
                return d / name, read_mapping(d / name, "training config")
    return None, None


def check_resume(cfg: dict, run_dir: Path, ckpt: str, info: CheckpointInfo) -> dict[str, list]:
    """The changes this resume makes to the run (``{key: [old, new]}``), all of them
    allowed by ``resume.allow_changes``; else one line naming the first one."""
    allowed = list(cfg["resume"]["allow_changes"])
    path, old = saved_config(run_dir, ckpt)
    if old is None:  # a bare checkpoint: its own hyper-parameters
        hp = info.hparams
        own = {"model": hp.model, "loss": hp.loss, "optim": hp.optim}
        old = {k: v for k, v in own.items() if v is not None}
    new = {k: v for k, v in cfg.items() if k in {i.split(".")[0] for i in IDENTITY}}
    old = {k: v for k, v in old.items() if k in new}
    changes = identity_changes(old, new)
    refused = {k: v for k, v in changes.items() if not _under(k, allowed)}
    if refused:
        key, (was, now) = next(iter(refused.items()))
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise InputError(
            f"{key} = {now!r}: the run being resumed ({path or ckpt}) was trained with "
            f"{key} = {was!r}{more}; resuming with another value makes it neither that run "
            f"nor a new one. Keep its value, start a new run_dir, or allow the change: "
            f"resume.allow_changes=[{', '.join(refused)}]"
        )
    return changes


def record_resume(run_dir: Path, ckpt: str, step: int, changes: dict, allowed: list) -> None:
    """Append this resume to ``RUN_DIR/resumes.jsonl`` (what changed, and that it was
    asked for)."""
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "checkpoint": str(ckpt),
        "global_step": step,
        "changes": changes,
        "allow_changes": allowed,
    }
    log = run_dir / "resumes.jsonl"
    before = log.read_text() if log.is_file() else ""
    with written_atomically(log) as tmp:
        tmp.write_text(before + json.dumps(entry, default=str) + "\n")


def write_config(path: Path, cfg: dict) -> None:
    with written_atomically(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
