"""darktable's ``noiseprofiles.json`` (per camera and ISO, ``a`` and ``b`` per channel on
raw values normalised to [0, 1]), read once into typed records.

Only the fields this project uses are read; darktable's others (``name``, comments, ...)
are left alone. A file that is not such a document is one line naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, ValidationError

from data_gen.core.errors import InputError
from data_gen.core.typed import Record


class Profile(Record):
    iso: int | float  # as written (ISO 100 stays 100 in messages)
    a: list[float]
    b: list[float]
    skip: bool = False  # darktable's mark of a profile it does not use


class Model(Record):
    model: str = ""
    profiles: list[Profile] = Field(default_factory=list)

    @property
    def used(self) -> list[Profile]:
        return [p for p in self.profiles if not p.skip]


class Maker(Record):
    maker: str = ""
    models: list[Model] = Field(default_factory=list)


class NoiseProfiles(Record):
    noiseprofiles: list[Maker]

    def models(self, maker: str, model: str) -> list[Model]:
        """Every entry of ``maker model`` (case-insensitive), in file order."""
        return [
            mo
            for mk in self.noiseprofiles
            if mk.maker.lower() == str(maker).lower()
            for mo in mk.models
            if mo.model.lower() == str(model).lower()
        ]

    def names(self) -> list[str]:
        """``maker model`` of every entry."""
        return [f"{mk.maker} {mo.model}" for mk in self.noiseprofiles for mo in mk.models]


def load_noiseprofiles(path: str | Path) -> NoiseProfiles:
    """The document at ``path``; one line naming the file when it is not one."""
    try:
        return NoiseProfiles.model_validate(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, ValidationError) as e:
        why = e.errors()[0]["msg"] if isinstance(e, ValidationError) else e
        raise InputError(f"{path}: not a darktable noiseprofiles.json ({why})") from None
