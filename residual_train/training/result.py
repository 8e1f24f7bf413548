"""What a finished training run reports: ``RUN_DIR/result.json``, typed (:class:`RunResult`).

:func:`~residual_train.training.train.train` writes it (and returns it as a mapping); the
export (the card's ``metrics``) and the pipelines read it back with :meth:`RunResult.read`,
an older file lacking an entry giving its default (None).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ConfigDict

from data_gen.core.paths import written_atomically
from data_gen.core.typed import Settings, parse
from data_gen.shards import read_mapping

FILE = "result.json"


class RunResult(Settings):
    """``result.json``: the metric the run monitored (``monitor``), its best value
    (``value``; None when none was logged), the best checkpoint's path (``best``; None
    without a ``best`` checkpoint callback), the run directory and the step training ended
    at. Entries of a later version are kept as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)

    monitor: str | None = None
    value: float | None = None
    best: str | None = None
    run_dir: str | None = None
    global_step: int | None = None

    @classmethod
    def read(cls, path: str | Path) -> RunResult:
        """The result in the file ``path`` (a missing or corrupt file, or a bad entry, is an
        :class:`~data_gen.core.errors.InputError` naming it)."""
        path = Path(path)
        return parse(cls, read_mapping(path, "training result"), f"{path}: training result")

    def to_dict(self) -> dict:
        """The JSON mapping, in the order the file lists it."""
        return self.model_dump()

    def to_json(self) -> str:
        """``result.json``'s text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(self, path: str | Path) -> None:
        """Write ``result.json`` at ``path`` (atomically: a reader never sees half a file)."""
        with written_atomically(Path(path)) as tmp:
            tmp.write_text(self.to_json())
