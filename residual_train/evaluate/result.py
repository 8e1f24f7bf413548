"""An evaluation's result (:func:`residual_train.evaluate.run.evaluate`; ``metrics.json`` is
it without the arrays) as its readers take it: the evaluation page and the demo's report.

The rows of ``per_iso``, ``per_image`` and each set's ``per_iso`` stay mappings: their
columns depend on the baselines evaluated (``psnr_<baseline>``, ``gain_over_<baseline>``),
and they are laid out as tables by column name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from data_gen.core.typed import NullIsEmpty, Record, parse

Row = dict[str, Any]


class EvaluatedModel(Record):
    """Which model was evaluated."""

    ref: str  # as given: an export directory, NAME[:VERSION|ALIAS] or a shipped name
    path: str  # the export directory it resolved to


class SetResult(Record):
    """One set of photographs: its role (``validation``, ``test``, ...), its number of
    images and its rows per ISO."""

    role: str
    images: int
    per_iso: list[Row]


class EvaluationResult(Record):
    """What :func:`~residual_train.evaluate.run.evaluate` returns, typed. ``per_set`` is
    empty for a result from before sets were reported; ``arrays`` (per image and ISO the
    kept images and maps the pages show) is empty in ``metrics.json``."""

    model: EvaluatedModel
    baselines: list[str]
    images: list[str]
    per_iso: list[Row]
    per_image: list[Row]
    per_set: Annotated[dict[str, SetResult], NullIsEmpty] = Field(default_factory=dict)
    arrays: Annotated[dict[str, dict[float, dict[str, Any]]], NullIsEmpty] = Field(
        default_factory=dict
    )

    @classmethod
    def of(cls, result: EvaluationResult | Mapping) -> EvaluationResult:
        """``result`` typed (checked once; a typed one is returned as it is; one line naming
        the key and the value otherwise)."""
        return result if isinstance(result, cls) else parse(cls, result, "evaluation result")
