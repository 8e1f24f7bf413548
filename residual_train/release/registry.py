"""A weight registry on any filesystem path (e.g. a cluster's shared filesystem).

Layout::

    REGISTRY/NAME/VERSION/   model.onnx, weights.safetensors, card.json, card.md, SHA256SUMS
    REGISTRY/NAME/index.json {versions: {V: {card_sha256, metrics, published}}, aliases: {A: V}}

Versions are immutable: publishing an existing version is refused. Aliases
(``latest``, ``best``, user-defined) move. :meth:`Registry.fetch` verifies the card
against the index and every file against the card, and refuses a tampered file.
The command line is :mod:`residual_train.release.publish`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, ValidationError

from data_gen.core.errors import InputError, require
from data_gen.core.typed import parse
from data_gen.shards import read_mapping, sha256_file, write_json_atomic
from residual_train.release.card import ModelCard

FILES = ("model.onnx", "weights.safetensors", "card.json", "card.md", "SHA256SUMS")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class TamperedError(InputError):
    """A registry file does not match its recorded sha256."""


class _Entry(BaseModel):
    """A part of ``index.json``: the entries it declares typed, any other kept as it is
    (:meth:`RegistryIndex.to_dict` writes back what was read, and only that)."""

    model_config = ConfigDict(extra="allow")


class VersionMetrics(_Entry):
    """A version's ``metrics``: its card's (the run's monitored metric, its best value —
    a PSNR, higher is better —, the best checkpoint, the step and epoch of the weights);
    None where the card has none."""

    monitor: str | None = None
    value: int | float | None = None  # as the card wrote it (an int stays an int)
    best: str | None = None
    global_step: int | None = None
    epoch: int | None = None


class VersionEntry(_Entry):
    """``versions[V]``: the sha256 of the version's ``card.json``, its metrics and when it
    was published."""

    card_sha256: str
    metrics: VersionMetrics = VersionMetrics()
    published: str | None = None


class RegistryIndex(_Entry):
    """``NAME/index.json``: ``versions`` (version -> :class:`VersionEntry`) and ``aliases``
    (alias -> version), checked once where it is read (:meth:`parse`)."""

    versions: dict[str, VersionEntry]
    aliases: dict[str, str]

    @classmethod
    def empty(cls) -> RegistryIndex:
        """The index of a name nothing was published under yet."""
        return cls(versions={}, aliases={})

    @classmethod
    def parse(cls, obj: Any, where: str) -> RegistryIndex:
        """The index in the JSON value ``obj`` (``where`` names it in a one-line error)."""
        try:
            return cls.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
        loc = tuple(err["loc"])
        if not loc:
            raise InputError(f"{where}: registry index is not a mapping; corrupt")
        if len(loc) == 1:
            raise InputError(f"{where}: registry index lacks {loc[0]!r}; corrupt")
        key = ".".join(map(str, loc))
        raise InputError(f"{where}: registry index entry {key}: {err['msg']}; corrupt")

    def to_dict(self) -> dict:
        """The JSON mapping (what was read, with what was added since)."""
        return self.model_dump(exclude_unset=True)

    def resolve(self, tag: str) -> str:
        """The version an alias names; any other tag as it is (a version, or nothing)."""
        return self.aliases.get(tag, tag)

    def alias_value(self, alias: str) -> int | float | None:
        """The metric value of the version ``alias`` names (None: no such alias, or no
        value)."""
        version = self.aliases.get(alias)
        entry = self.versions.get(version)
        return entry.metrics.value if entry is not None else None

    def aliases_of(self) -> dict[str, list[str]]:
        """version -> the aliases naming it (sorted)."""
        tags: dict[str, list[str]] = {}
        for a, v in sorted(self.aliases.items()):
            tags.setdefault(v, []).append(a)
        return tags


def read_sums(path: Path) -> dict[str, str]:
    """``SHA256SUMS`` (``<hex>  <name>`` lines) as ``{name: hex}``."""
    out = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if not (re.fullmatch(r"[0-9a-f]{64}", digest) and name):
            raise InputError(f"{path}, line {i}: not '<sha256>  <file>' ({line[:80]!r})")
        out[name] = digest
    return out


def verify_export(src: str | Path) -> ModelCard:
    """Check an export directory before it is published; returns its card.

    Every file is present; every file matches ``SHA256SUMS`` (which covers the card too:
    a card edited after export is refused); the card's own file hashes match; and the card
    has the keys a deployment needs.
    """
    src = Path(src)
    for f in FILES:
        require((src / f).is_file(), f"src = {str(src)!r}: {f} missing (not an export directory)")
    sums = read_sums(src / "SHA256SUMS")
    for f in FILES:
        if f == "SHA256SUMS":
            continue
        require(f in sums, f"{src / 'SHA256SUMS'}: lists no sha256 for {f}")
        if sha256_file(src / f) != sums[f]:
            raise TamperedError(
                f"{src / f}: sha256 differs from {src / 'SHA256SUMS'} (changed after export)"
            )
    card = ModelCard.read(src / "card.json", ("components", "channels", "files", "outputs"))
    for f, digest in card.files.items():
        if not (src / f).is_file() or sha256_file(src / f) != digest:
            raise TamperedError(f"{src / f}: sha256 does not match its card")
    return card


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def _index_path(self, name: str) -> Path:
        return self.root / name / "index.json"

    def read_index(self, name: str) -> RegistryIndex:
        """The index of ``name`` (empty when nothing was published under it)."""
        p = self._index_path(name)
        if not p.is_file():
            return RegistryIndex.empty()
        return RegistryIndex.parse(read_mapping(p, "registry index"), str(p))

    def index(self, name: str) -> dict:
        """The index of ``name`` as its JSON mapping (:meth:`read_index`: typed)."""
        return self.read_index(name).to_dict()

    @contextlib.contextmanager
    def _locked(self, name: str):
        (self.root / name).mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / name / ".lock"):  # several jobs may publish at once
            yield

    def publish(
        self, src: str | Path, name: str, version: str, aliases: list[str] | tuple = ()
    ) -> Path:
        """Copy an export directory in as ``name/version``; returns its path."""
        src = Path(src)
        for n, v in (("name", name), ("version", version), *(("alias", a) for a in aliases)):
            require(bool(_NAME.match(v)), f"{n} = {v!r}: use letters, digits, '.', '_' or '-'")
        card = verify_export(src)
        metrics = parse(VersionMetrics, card.metrics, f"{src / 'card.json'}: metrics")
        with self._locked(name):
            idx = self.read_index(name)
            dest = self.root / name / version
            if version in idx.versions or dest.exists():
                raise InputError(
                    f"{name}/{version} is already published in {self.root}; "
                    "versions are immutable, choose a new version"
                )
            tmp = self.root / name / f".{version}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for f in FILES:
                shutil.copy2(src / f, tmp / f)
            os.replace(tmp, dest)
            old = idx.alias_value("best")
            idx.versions[version] = VersionEntry(
                card_sha256=sha256_file(dest / "card.json"),
                metrics=metrics,
                published=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            )
            idx.aliases["latest"] = version
            value = metrics.value
            if value is not None and (old is None or value > old):  # metrics are PSNR: higher wins
                idx.aliases["best"] = version
            for a in aliases:
                idx.aliases[a] = version
            write_json_atomic(self._index_path(name), idx.to_dict())
        return dest

    def set_alias(self, name: str, alias: str, version: str) -> None:
        require(bool(_NAME.match(alias)), f"alias = {alias!r}: letters, digits, '.', '_' or '-'")
        with self._locked(name):
            idx = self.read_index(name)
            require(version in idx.versions, f"{name}/{version} is not published in {self.root}")
            idx.aliases[alias] = version
            write_json_atomic(self._index_path(name), idx.to_dict())

    def resolve(self, ref: str) -> tuple[str, str]:
        """``NAME[:VERSION_OR_ALIAS]`` (default alias ``latest``) -> (name, version)."""
        name, _, tag = ref.partition(":")
        tag = tag or "latest"
        idx = self.read_index(name)
        require(bool(idx.versions), f"model {name!r} is not in the registry {self.root}")
        version = idx.resolve(tag)
        require(
            version in idx.versions,
            f"{name}:{tag} is neither a version nor an alias in {self.root} "
            f"(versions {sorted(idx.versions)}, aliases {sorted(idx.aliases)})",
        )
        return name, version

    def fetch(self, ref: str) -> Path:
        """Verified directory of ``ref``; raises :class:`TamperedError` on any mismatch."""
        name, version = self.resolve(ref)
        d = self.root / name / version
        entry = self.read_index(name).versions[version]
        if sha256_file(d / "card.json") != entry.card_sha256:
            raise TamperedError(f"{d / 'card.json'}: sha256 differs from the registry index")
        for f, digest in ModelCard.read(d / "card.json").files.items():
            if not (d / f).is_file() or sha256_file(d / f) != digest:
                raise TamperedError(f"{d / f}: sha256 differs from the card (tampered or corrupt)")
        return d

    def list(self, name: str | None = None) -> list[dict]:
        require(self.root.is_dir(), f"registry = {str(self.root)!r}: not a directory")
        names = (
            [name]
            if name
            else sorted(p.name for p in self.root.iterdir() if (p / "index.json").is_file())
        )
        rows = []
        for n in names:
            idx = self.read_index(n)
            tags = idx.aliases_of()
            for v, e in sorted(idx.versions.items()):
                rows.append(
                    {
                        "name": n,
                        "version": v,
                        "aliases": tags.get(v, []),
                        "monitor": e.metrics.monitor,
                        "value": e.metrics.value,
                        "published": e.published,
                    }
                )
        return rows
