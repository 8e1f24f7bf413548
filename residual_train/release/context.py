"""What the export reads beside a checkpoint, typed: :class:`TrainingContext` (the run's
config and result, its dataset's config and manifest), each checked once where its file is
read.

The run's and the dataset's configs are read through views (:class:`RunConfig`,
:class:`DatasetConfig`) of the entries the card needs, each with its default for a file
written before the entry existed; every other entry is left to the card, which records the
run's config as it is (``training``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from data_gen.core.typed import NullIsEmpty, Record, parse
from data_gen.manifest import Manifest
from data_gen.shards import MANIFEST, read_manifest, read_mapping, sha256_file
from residual_train.training.result import FILE as RESULT
from residual_train.training.result import RunResult

# a group written as null (``data: null``) reads as the group with its defaults

ComponentSettings = dict[str, dict | None]  # component -> its settings (their ranges)


class _View(Record):
    """Some entries of a config file, typed; the others are not read here."""


class Generator(_View):
    """``data.onthefly.generator``: overrides of the dataset's rendering settings."""

    component: ComponentSettings | None = None


class OnTheFly(_View):
    """``data.onthefly``: whether training rendered its data itself, and with what."""

    enabled: bool = False
    generator: Generator | None = None


class RunData(_View):
    """``data`` of a training config: the dataset directory and on-the-fly rendering."""

    dir: str | None = None
    onthefly: Annotated[OnTheFly, NullIsEmpty] = OnTheFly()


class RunConfig(_View):
    """A training run's ``config.yaml``: what the card reads of it."""

    data: Annotated[RunData, NullIsEmpty] = RunData()


class DatasetConfig(_View):
    """A dataset's ``config.yaml``: its layout (``rgb``, or ``rggb`` packed Bayer planes
    with their ``cfa``), sensor, lens and component settings."""

    layout: str | None = "rgb"
    cfa: Any = None
    sensor: Any = None
    lens: Any = None
    component: ComponentSettings | None = None

    def rendered_components(self, run: RunConfig) -> dict | None:
        """The ``component`` settings the training data was rendered with: the dataset's,
        updated by the run's on-the-fly ``generator`` override (None for blur + noise
        data)."""
        settings = dict(self.component or {})
        fly = run.data.onthefly
        extra = fly.generator.component if fly.enabled and fly.generator else None
        for name, v in (extra or {}).items():
            settings[name] = {**(settings.get(name) or {}), **(v or {})}
        return settings or None


@dataclass(frozen=True)
class TrainingContext:
    """What the training run left beside a checkpoint: its config (``config``, as the card
    records it, and ``run``, what the export reads of it), its result, and the config and
    manifest of its dataset (each None where absent) and the manifest file's sha256."""

    config: dict | None = None
    run: RunConfig = field(default_factory=RunConfig)
    result: RunResult | None = None
    data: DatasetConfig | None = None
    manifest: Manifest | None = None
    manifest_sha256: str | None = None

    @classmethod
    def of(cls, ckpt: Path) -> TrainingContext:
        config = run_config_path(ckpt)
        run_dir = config.parent
        cfg = _mapping_if_present(config, "training config")
        run = parse(RunConfig, cfg, f"{config}: training config")
        res = RunResult.read(run_dir / RESULT) if (run_dir / RESULT).is_file() else None
        data_cfg = manifest = digest = None
        if run.data.dir:
            d = Path(run.data.dir)
            raw = _mapping_if_present(d / "config.yaml", "dataset config")
            if raw is not None:
                data_cfg = parse(DatasetConfig, raw, f"{d / 'config.yaml'}: dataset config")
            if (d / MANIFEST).is_file():
                manifest, digest = read_manifest(d), sha256_file(d / MANIFEST)
        return cls(cfg, run, res, data_cfg, manifest, digest)


def run_config_path(ckpt: str | Path) -> Path:
    """Where the training config of checkpoint ``ckpt`` lies: ``RUN_DIR/config.yaml`` for
    ``RUN_DIR/checkpoints/NAME.ckpt``."""
    return Path(ckpt).parent.parent / "config.yaml"


def _mapping_if_present(path: Path, what: str) -> dict | None:
    return read_mapping(path, what) if path.is_file() else None
