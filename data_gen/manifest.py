"""Typed records of a dataset directory (docs/design.md §7), parsed once where read.

* :class:`ShardEntry`: one shard as ``manifest.json`` lists it; :class:`ShardRecord`: the
  same plus the config hash, as ``records/NAME.json`` holds it.
* :class:`Manifest`: ``manifest.json``.
* :class:`ShardHeader`: the attributes of an HDF5 shard.

Fields that older datasets lack have their defaults here: schema v1 lists no
``components`` (blur, noise), datasets older than packed Bayer data no ``layout`` (rgb).
Unknown keys are ignored (a newer writer may add some). The writers
(:mod:`data_gen.shards`, :mod:`data_gen.generate`) keep writing the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import h5py
from pydantic import BaseModel, BeforeValidator, ValidationError

from data_gen.components import V1 as V1_COMPONENTS
from data_gen.core.errors import InputError
from data_gen.core.typed import Record


def _component_names(v: Any) -> Any:
    """A stored component list as strings (HDF5 may give bytes); null or empty: schema v1's."""
    if v is None or len(v) == 0:
        return V1_COMPONENTS
    return tuple(c.decode() if isinstance(c, bytes) else str(c) for c in v)


Components = Annotated[tuple[str, ...], BeforeValidator(_component_names)]
"""A dataset's component list, in physical order (schema v1: ``("blur", "noise")``)."""


class ShardEntry(Record):
    """One shard of ``manifest.json``: file name, index, sample count, size in bytes and
    sha256 (hex) of the file."""

    name: str
    index: int
    samples: int
    bytes: int
    sha256: str


class ShardRecord(ShardEntry):
    """``records/NAME.json``: a shard's manifest entry and the hash of the config that made
    it (the shard is complete when the file matches it)."""

    config_hash: str

    @property
    def entry(self) -> ShardEntry:
        """The manifest's entry of this shard (the record without its config hash)."""
        return ShardEntry(**self.model_dump(exclude={"config_hash"}))


class Manifest(Record):
    """``manifest.json``: what every shard shares, and the shards.

    ``patch_size`` (px, stored: packed Bayer planes are half the rendered patch),
    ``channels`` (stored), ``total_samples`` and the rest are None where a hand-made or old
    manifest lacks them; their readers require them."""

    schema_version: int
    config_hash: str
    shards: tuple[ShardEntry, ...]
    components: Components = V1_COMPONENTS
    layout: str = "rgb"
    cfa: str | None = None  # packed Bayer data: the CFA pattern (e.g. "RGGB")
    patch_size: int | None = None
    channels: int | None = None
    samples_per_shard: int | None = None
    num_shards: int | None = None
    total_samples: int | None = None
    dtype: str | None = None
    scale: str | None = None
    package_version: str | None = None


class ShardHeader(Record):
    """The attributes of an HDF5 shard (:func:`data_gen.generate.shard_attrs`).

    ``config``: the generation config as YAML; ``margin``: px rendered beyond the patch
    (schema v2). None where an older shard lacks one."""

    schema_version: int | None = None
    components: Components = V1_COMPONENTS
    margin: int | None = None
    layout: str = "rgb"
    scale: str | None = None
    channels: int | None = None
    cfa: str | None = None
    config: str | None = None
    config_hash: str | None = None
    package_version: str | None = None
    shard_index: int | None = None
    num_shards: int | None = None
    psf_name: str | None = None

    @classmethod
    def read(cls, f: h5py.File) -> ShardHeader:
        """The header of an open shard (an :class:`InputError` naming the file when an
        attribute has the wrong type)."""
        return parse_record(cls, dict(f.attrs), f"{f.filename}: shard header")


R = TypeVar("R", bound=BaseModel)


def parse_record(model: type[R], data: Mapping, where: str) -> R:
    """``data`` as ``model``; the first problem as one :class:`InputError` line:
    ``<where> lacks the key 'k'`` or ``<where>: k = <value>: <what is wrong>``."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            raise InputError(f"{where} lacks the key {key!r}") from None
        raise InputError(f"{where}: {key} = {err['input']!r}: {err['msg']}") from None
