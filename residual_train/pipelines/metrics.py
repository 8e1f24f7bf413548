"""A training run's ``logs/metrics.csv`` (Lightning's CSV logger: one row per logging step,
an empty cell where that step logged no such value), read once into typed rows for the
demos' reports."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

_VAL = "val/psnr_"  # val/psnr_<component> and val/psnr_<component>_input
_INPUT = "_input"


def _number(cell: str | None) -> float | None:
    """A cell's value; None where the row has none (an empty cell, or no such column)."""
    return float(cell) if cell else None


@dataclass(frozen=True)
class MetricsRow:
    """One row: the step, the training loss when this step logged it, and the validation
    PSNR per component (``full``: every component corrected; ``blur``, ``noise``, ...) of
    the model's correction and of the input, for the components this row has."""

    step: int
    train_loss: float | None = None
    val_psnr: dict[str, float] = field(default_factory=dict)
    val_psnr_input: dict[str, float] = field(default_factory=dict)

    @property
    def validated(self) -> bool:
        """Whether this row holds a validation (its PSNR with every component corrected)."""
        return "full" in self.val_psnr

    @classmethod
    def of(cls, row: dict[str, str]) -> MetricsRow:
        """A row of :class:`csv.DictReader` (the per-ISO columns ``val/psnr_full/iso...``
        are left out)."""
        loss, psnr, psnr_input = None, {}, {}
        for key, cell in row.items():
            value = None if key is None else _number(cell)  # key None: cells beyond the header
            if value is None:
                continue
            name = key.removeprefix(_VAL)
            if key == "train/loss":
                loss = value
            elif key.startswith(_VAL) and "/" not in name:
                if name.endswith(_INPUT):
                    psnr_input[name.removesuffix(_INPUT)] = value
                else:
                    psnr[name] = value
        return cls(int(row["step"]), loss, psnr, psnr_input)


def read_metrics(run_dir: Path) -> list[MetricsRow]:
    """The rows of ``run_dir/logs/metrics.csv``, in order."""
    with (Path(run_dir) / "logs" / "metrics.csv").open(newline="") as f:
        return [MetricsRow.of(row) for row in csv.DictReader(f)]
