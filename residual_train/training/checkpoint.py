"""What residual-train reads from a Lightning checkpoint, typed: :class:`TrainingCheckpoint`
(``hyper_parameters``, ``state_dict``, ``global_step``, ``epoch``) and its
:class:`HyperParameters` (what :class:`~residual_train.training.lit.ResidualModule` saves).

Checkpoints are loaded without pickle (``torch.load(..., weights_only=True)``); the loaded
mapping is checked here once, and each reader (the resume, the export) names a problem in
its own words from :class:`BadCheckpoint`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, ValidationError

from data_gen.core.typed import Settings


class HyperParameters(Settings):
    """A checkpoint's ``hyper_parameters``: ``model`` (the network's settings, as the card
    records them) and ``channels``; ``loss``, ``optim``, ``val`` and ``run_dir`` as the
    module saved them (None in a checkpoint from before one existed). Further entries are
    kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model: dict
    channels: int | None = None
    loss: dict | None = None
    optim: dict | None = None
    val: dict | None = None
    run_dir: str | None = None


class TrainingCheckpoint(Settings):
    """The parts of a Lightning checkpoint residual-train reads (the rest, optimiser and
    callback states, is Lightning's). ``global_step``/``epoch``: None in a checkpoint
    without them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    hyper_parameters: HyperParameters
    state_dict: dict
    global_step: int | None = None
    epoch: int | None = None

    @classmethod
    def of(cls, ck: Any) -> TrainingCheckpoint:
        """The record of a loaded checkpoint ``ck``; :class:`BadCheckpoint` names the first
        part that is wrong and every required one that is missing."""
        if not isinstance(ck, dict):
            raise BadCheckpoint(None, [k for k, f in cls.model_fields.items() if f.is_required()])
        try:
            return cls.model_validate(ck)
        except ValidationError as e:
            errors = e.errors()
        missing = [
            str(x["loc"][0]) for x in errors if x["type"] == "missing" and len(x["loc"]) == 1
        ]
        raise BadCheckpoint(str(errors[0]["loc"][0]), missing)

    def state_of(self, prefix: str) -> dict:
        """The ``state_dict`` entries under ``prefix`` (``net.``), without it."""
        return {k[len(prefix) :]: v for k, v in self.state_dict.items() if k.startswith(prefix)}


class ResumableCheckpoint(TrainingCheckpoint):
    """A checkpoint training can resume: it also records the step it was saved at."""

    global_step: int


class BadCheckpoint(Exception):
    """A loaded checkpoint is not a residual-train one: ``part`` is the first entry that is
    wrong or missing (None: the file holds no mapping), ``missing`` the top-level entries
    it lacks."""

    def __init__(self, part: str | None, missing: list[str]) -> None:
        super().__init__(part)
        self.part, self.missing = part, missing
