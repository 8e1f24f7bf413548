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
import fcntl
import os
import re
import shutil
import time
from pathlib import Path

from data_gen.errors import InputError, require
from data_gen.shards import read_mapping, sha256_file, write_json_atomic
from residual_train.release.card import ModelCard

FILES = ("model.onnx", "weights.safetensors", "card.json", "card.md", "SHA256SUMS")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class TamperedError(InputError):
    """A registry file does not match its recorded sha256."""


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

    def index(self, name: str) -> dict:
        p = self._index_path(name)
        if not p.is_file():
            return {"versions": {}, "aliases": {}}
        idx = read_mapping(p, "registry index")
        for key in ("versions", "aliases"):
            require(isinstance(idx.get(key), dict), f"{p}: registry index lacks {key!r}; corrupt")
        return idx

    @contextlib.contextmanager
    def _locked(self, name: str):
        (self.root / name).mkdir(parents=True, exist_ok=True)
        with open(self.root / name / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # several jobs may publish at once
            yield

    def publish(
        self, src: str | Path, name: str, version: str, aliases: list[str] | tuple = ()
    ) -> Path:
        """Copy an export directory in as ``name/version``; returns its path."""
        src = Path(src)
        for n, v in (("name", name), ("version", version), *(("alias", a) for a in aliases)):
            require(bool(_NAME.match(v)), f"{n} = {v!r}: use letters, digits, '.', '_' or '-'")
        card = verify_export(src)
        with self._locked(name):
            idx = self.index(name)
            dest = self.root / name / version
            if version in idx["versions"] or dest.exists():
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
            metrics = card.metrics
            idx["versions"][version] = {
                "card_sha256": sha256_file(dest / "card.json"),
                "metrics": metrics,
                "published": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            idx["aliases"]["latest"] = version
            best = idx["aliases"].get("best")
            value = metrics.get("value")
            old = idx["versions"].get(best, {}).get("metrics", {}).get("value") if best else None
            if value is not None and (old is None or value > old):  # metrics are PSNR: higher wins
                idx["aliases"]["best"] = version
            for a in aliases:
                idx["aliases"][a] = version
            write_json_atomic(self._index_path(name), idx)
        return dest

    def set_alias(self, name: str, alias: str, version: str) -> None:
        require(bool(_NAME.match(alias)), f"alias = {alias!r}: letters, digits, '.', '_' or '-'")
        with self._locked(name):
            idx = self.index(name)
            require(version in idx["versions"], f"{name}/{version} is not published in {self.root}")
            idx["aliases"][alias] = version
            write_json_atomic(self._index_path(name), idx)

    def resolve(self, ref: str) -> tuple[str, str]:
        """``NAME[:VERSION_OR_ALIAS]`` (default alias ``latest``) -> (name, version)."""
        name, _, tag = ref.partition(":")
        tag = tag or "latest"
        idx = self.index(name)
        require(bool(idx["versions"]), f"model {name!r} is not in the registry {self.root}")
        version = idx["aliases"].get(tag, tag)
        require(
            version in idx["versions"],
            f"{name}:{tag} is neither a version nor an alias in {self.root} "
            f"(versions {sorted(idx['versions'])}, aliases {sorted(idx['aliases'])})",
        )
        return name, version

    def fetch(self, ref: str) -> Path:
        """Verified directory of ``ref``; raises :class:`TamperedError` on any mismatch."""
        name, version = self.resolve(ref)
        d = self.root / name / version
        entry = self.index(name)["versions"][version]
        if sha256_file(d / "card.json") != entry["card_sha256"]:
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
            idx = self.index(n)
            tags = {}
            for a, v in idx["aliases"].items():
                tags.setdefault(v, []).append(a)
            for v, e in sorted(idx["versions"].items()):
                rows.append(
                    {
                        "name": n,
                        "version": v,
                        "aliases": sorted(tags.get(v, [])),
                        "monitor": e["metrics"].get("monitor"),
                        "value": e["metrics"].get("value"),
                        "published": e["published"],
                    }
                )
        return rows
