"""The training config as typed settings, checked once where training starts: every value
a user can set has its type and range, one line naming the key and the value otherwise
(``data.batch_size = 'abc': an integer >= 1``).

The defaults live in one place, the YAML (``conf/train.yaml``, ``conf/data/default.yaml``):
a full config is checked as it is; a partial mapping given to the library (the data
module's keyword arguments, a checkpoint's hyper-parameters from before a setting existed)
is completed from the YAML first (:func:`completed`). The models have no defaults of their
own (but the data's ``_target_``, which a library call leaves out). The network's options
are checked by :func:`residual_train.models.build_model`, the Trainer's by the Trainer.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import ConfigDict

from data_gen.core.typed import Settings
from data_gen.core.values import mapping, numbers
from residual_train.data_settings import DataSettings
from residual_train.training.losses import LOSSES
from residual_train.typed import (  # noqa: F401 (parse, completed, build: re-exported)
    Bool,
    Int,
    Num,
    OneOf,
    Partial,
    Target,
    build,
    checked,
    completed,
    defaults,
    parse,
    string_list,
)


class LossSettings(Settings):
    """``loss``: the criterion :class:`~residual_train.training.losses.ResidualLoss`
    (``_target_``) is built with these and the model's heads."""

    target: Target
    type: OneOf(*LOSSES)
    eps: Num(positive=True)
    domain: OneOf("residual", "image")
    weights: Annotated[dict[str, Num(lo=0)], checked(mapping)]
    sigma_units: Annotated[list[str], string_list("a list of heads (or 'full')")]
    full: Num(lo=0)
    border: Int(0)


class SchedulerSettings(Settings):
    """``optim.scheduler``: called with the optimiser and ``total_steps``, ``warmup_steps``,
    ``min_lr_ratio`` (further keys are its own keyword arguments)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    target: Target
    partial: Partial


class OptimSettings(Settings):
    """``optim``: the optimiser (``_target_``, called with the parameters; further keys are
    its own keyword arguments) and the settings of its learning-rate schedule."""

    model_config = ConfigDict(extra="allow", frozen=True)
    target: Target
    partial: Partial
    lr: Num(positive=True)
    weight_decay: Num(lo=0)
    betas: Annotated[
        tuple[float, float] | None, checked(numbers, 2, lo=0, hi=1, none_ok=True)
    ]  # null: not passed (an optimiser without betas, e.g. torch.optim.SGD)
    fused: OneOf("auto", True, False)
    warmup_steps: Int(0)
    min_lr_ratio: Num(lo=0, hi=1)
    scheduler: SchedulerSettings

    # the keys of the learning-rate schedule (the rest are the optimiser's)
    SCHEDULE: ClassVar[tuple] = ("warmup_steps", "min_lr_ratio", "scheduler", "fused")

    def optimizer_kwargs(self) -> dict:
        """The optimiser's keyword arguments (``fused`` is resolved by the module)."""
        d = self.model_dump(by_alias=True, exclude=set(self.SCHEDULE))
        if d["betas"] is None:
            del d["betas"]
        return d


class ValSettings(Settings):
    iso_bins: Annotated[list[float], checked(numbers, lo=0)]
    panel_every: Int(0)
    panel_samples: Int(1)


class PerfSettings(Settings):
    channels_last: Bool
    compile: Bool


class ResumeSettings(Settings):
    allow_changes: Annotated[list[str], string_list("a list of setting names, e.g. [optim.lr]")]


class TrainSettings(Settings):
    """The whole training config (``conf/train.yaml`` composed). ``model``, ``trainer``,
    ``logger`` and ``callbacks`` stay mappings: they are keyword arguments of what their
    ``_target_`` builds, checked when it is built."""

    run_dir: str
    ckpt_path: str | None
    overwrite: Bool
    resume: ResumeSettings
    init_from: str | None
    seed: Int(0)
    record_seen: Bool
    monitor: str
    loss: LossSettings
    optim: OptimSettings
    perf: PerfSettings
    val: ValSettings
    data: DataSettings
    model: dict
    trainer: dict
    logger: dict | None
    callbacks: dict | None


def check_train_config(cfg: dict) -> TrainSettings:
    """The composed training config as :class:`TrainSettings` (one line naming the first
    bad key and value otherwise)."""
    return parse(TrainSettings, cfg, "")
