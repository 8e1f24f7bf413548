"""The ``data`` settings (``conf/data/default.yaml``) of
:class:`~residual_train.data.ResidualDataModule`, typed (:mod:`residual_train.typed`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from data_gen.core.typed import Settings
from residual_train.typed import Bool, Int, Num, OneOf

# what a training target is: the residual of each component peeled off in chain order,
# or each component left out of the full chain (docs/design.md)
TARGETS = ("peeling", "leave_one_out")


class OntheflySettings(Settings):
    enabled: Bool
    samples_per_epoch: Int(1)
    pool: Int(1)
    prefetch: Int(0)
    threads: Int(1)
    cache_gb: Num(lo=0)
    generator: dict | None

    @model_validator(mode="after")
    def _generator_needs_enabled(self):
        if self.generator and not self.enabled:
            raise ValueError("data.onthefly.generator is only read with data.onthefly.enabled=true")
        return self


def _onthefly(value):
    if not isinstance(value, Mapping):
        raise ValueError("a mapping (data.onthefly.enabled=true, ...)")
    return value


class DataSettings(Settings):
    """``data``: what :class:`~residual_train.data.ResidualDataModule` reads (checks that
    need the dataset, such as the crop against its patch size, are its own)."""

    target: Annotated[str | None, Field(alias="_target_")] = None  # absent in a library call
    dir: str
    crop: Int(1, none_ok=True)
    batch_size: Int(1)
    val_batch_size: Int(1, none_ok=True)
    val_shards: Any  # a number, a fraction, shard indices or "all": checked against the shards
    num_workers: Int(0)
    start_method: OneOf(None, "fork", "spawn", "forkserver")
    augment: Bool
    geometric: OneOf("lens", "all", "none")
    sigma_map: Bool
    targets: OneOf(*TARGETS)
    verify: OneOf("sha256", "size", "none")
    onthefly: Annotated[OntheflySettings, BeforeValidator(_onthefly)]

    @model_validator(mode="after")
    def _dir_given(self):
        if self.dir == "???":
            raise ValueError("data.dir is missing: give the dataset directory as data.dir=DIR")
        return self
