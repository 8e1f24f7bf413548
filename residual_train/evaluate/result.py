"""An evaluation's result (:func:`residual_train.evaluate.run.evaluate`; ``metrics.json`` is
it without the arrays) as its readers take it: the evaluation page and the demo's report.

The rows of ``per_iso``, ``per_image`` and each set's ``per_iso`` stay mappings: their
columns depend on the baselines evaluated (``psnr_<baseline>``, ``gain_over_<baseline>``),
and they are laid out as tables by column name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

Row = dict[str, Any]
_NONE_IS_EMPTY = BeforeValidator(lambda v: {} if v is None else v)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EvaluatedModel(_Record):
    """Which model was evaluated."""

    ref: str  # as given: an export directory, NAME[:VERSION|ALIAS] or a shipped name
    path: str  # the export directory it resolved to


class SetResult(_Record):
    """One set of photographs: its role (``validation``, ``test``, ...), its number of
    images and its rows per ISO."""

    role: str
    images: int
    per_iso: list[Row]


class EvaluationResult(_Record):
    """What :func:`~residual_train.evaluate.run.evaluate` returns, typed. ``per_set`` is
    empty for a result from before sets were reported; ``arrays`` (per image and ISO the
    kept images and maps the pages show) is empty in ``metrics.json``."""

    model: EvaluatedModel
    baselines: list[str]
    images: list[str]
    per_iso: list[Row]
    per_image: list[Row]
    per_set: Annotated[dict[str, SetResult], _NONE_IS_EMPTY] = {}
    arrays: Annotated[dict[str, dict[float, dict[str, Any]]], _NONE_IS_EMPTY] = {}

    @classmethod
    def of(cls, result: EvaluationResult | Mapping) -> EvaluationResult:
        """``result`` typed (checked once; a typed one is returned as it is)."""
        return result if isinstance(result, cls) else cls.model_validate(dict(result))
