"""HDF5 shard storage (docs/design.md §7), per-shard records and the manifest.

Schema v1 (the two components blur and noise): patches ``clean``, ``blur``, ``noise``,
``noise_blur``. Schema v2 (any component list, :mod:`data_gen.chain`):
``input``, ``clean``, ``without_<c>`` and ``before_<c>``, the list in the ``components``
attribute and every component's parameters in ``meta``. Both stay readable.

A shard is written to ``NAME.tmp-PID`` and renamed when complete, so a crashed task
never leaves a half shard under its final name. After the rename a record
``records/NAME.json`` (sample count, sha256, config hash) is written; a shard is
*complete* when its record exists and the file's sha256 matches it. ``manifest.json``
is assembled from the records once every shard is complete; it holds no timestamps,
so the same config gives a byte-identical manifest. Readers get them as the typed records
of :mod:`data_gen.manifest`, parsed once here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from pydantic import ValidationError

from data_gen.chain import stored_names
from data_gen.core.errors import InputError
from data_gen.core.paths import written_atomically
from data_gen.manifest import Manifest, ShardEntry, ShardHeader, ShardRecord, parse_record
from data_gen.render import PATCHES

SCHEMA_VERSIONS = (1, 2)  # v1: what the default [blur, noise] writes
SCALE = "linear; 0 = black level, 1 = white level"
MANIFEST = "manifest.json"
RECORDS = "records"


def shard_name(index: int, total: int) -> str:
    return f"shard-{index:05d}-of-{total:05d}.h5"


def patch_names(f: h5py.File) -> list[str]:
    """The patch datasets of a shard, from its component list: schema v1's four, or v2's."""
    return stored_names(shard_components(f))


def shard_components(f: h5py.File) -> list[str]:
    """The component list of a shard (schema v1: blur, noise)."""
    return list(ShardHeader.read(f).components)


def meta_dtype(channels: int, extra: list | None = None) -> np.dtype:
    """Compound dtype of the per-sample ``meta`` dataset (raw-DN noise parameters per
    channel); ``extra``: further fields (schema v2: the components' parameters)."""
    return np.dtype(_meta_fields(channels) + list(extra or []))


def _meta_fields(channels: int) -> list:
    return [
        ("source", h5py.string_dtype("utf-8")),
        ("y", "<i4"),
        ("x", "<i4"),
        ("zoom", "<f4"),
        ("f_number", "<f4"),
        ("focus", "<f4"),
        ("image_height", "<f4"),
        ("azimuth", "<f4"),
        ("psf_index", "<i4"),
        ("iso", "<f4"),
        ("k0", "<f4", (channels,)),
        ("k1", "<f4", (channels,)),
        ("ob", "<f4"),
        ("white", "<f4"),
        ("exposure", "<f4"),
        ("seed", "<u8"),
    ]


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def read_mapping(path: Path, what: str = "file") -> dict:
    """A JSON or YAML mapping the project wrote (by the suffix: ``.json``, else YAML); a
    missing, unreadable or corrupt file is an :class:`InputError` naming it and ``what``
    it is."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} is missing")
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text()
        obj = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
        msg = " ".join(str(e).split())
        raise InputError(
            f"{path}: {what} is not valid {kind} ({msg}); corrupt or hand-edited"
        ) from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: {what} holds a {type(obj).__name__}, not a mapping")
    return obj


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write ``obj`` to a temporary file and rename it over ``path``; a failed write (a
    full disk) removes its temporary file and leaves ``path`` as it was."""
    with written_atomically(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class StorageSpec:
    dtype: str = "float32"
    compression: str | None = None
    compression_opts: int | None = None
    chunk_samples: int = 1


class ShardWriter:
    """Writes one shard batch by batch to a temporary file; :meth:`commit` renames it."""

    def __init__(
        self,
        final: Path,
        samples: int,
        channels: int,
        patch: int,
        storage: StorageSpec,
        attrs: dict,
        extra: dict | None = None,
        names: list[str] | None = None,
        meta: np.dtype | None = None,
    ) -> None:
        self.final = final
        self.tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        self.samples, self.pos = samples, 0
        self.names = list(names or PATCHES)
        self.meta = np.zeros(samples, meta if meta is not None else meta_dtype(channels))
        self.f = h5py.File(self.tmp, "w", track_order=False)
        # one uncompressed sample per chunk: write chunks directly, bypassing HDF5's pipeline
        self.direct = storage.compression is None and storage.chunk_samples == 1
        chunks = (min(storage.chunk_samples, samples), channels, patch, patch)
        for name in self.names:
            self.f.create_dataset(
                name,
                shape=(samples, channels, patch, patch),
                dtype=storage.dtype,
                chunks=chunks,
                compression=storage.compression,
                compression_opts=storage.compression_opts,
                track_times=False,
            )
        for k, v in attrs.items():
            self.f.attrs[k] = v
        for k, v in (extra or {}).items():  # e.g. the PSF bank, (N, C, K, K)
            self.f.create_dataset(k, data=v, track_times=False)

    def write(self, patches: dict[str, np.ndarray], meta: np.ndarray) -> None:
        n = len(meta)
        for name in self.names:
            ds = self.f[name]
            # convert in numpy: HDF5's own float32 -> float16 conversion is far slower
            arr = np.ascontiguousarray(patches[name], dtype=ds.dtype)
            if self.direct:
                for j in range(n):
                    ds.id.write_direct_chunk((self.pos + j, 0, 0, 0), arr[j])
            else:
                ds[self.pos : self.pos + n] = arr
        self.meta[self.pos : self.pos + n] = meta
        self.pos += n

    def commit(self) -> Path:
        if self.pos != self.samples:
            raise RuntimeError(f"shard {self.final.name}: {self.pos} of {self.samples} written")
        self.f.create_dataset("meta", data=self.meta, track_times=False)
        self.f.close()
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def remove_stale_tmp(out_dir: Path, name: str) -> None:
    """Delete temporary files a crashed writer of shard ``name`` left behind."""
    for t in out_dir.glob(f"{name}.tmp-*"):
        t.unlink(missing_ok=True)


# temporary files older than this belong to a dead writer (a live one touches its file
# at least once per batch; a JSON write takes milliseconds)
STALE_SECONDS = 3600.0


def stale_tmp_files(out_dir: Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Temporary files (``*.tmp-*``) in a dataset directory and its records, left by a
    writer that died (killed, full disk) at least ``older_than`` seconds ago."""
    now = time.time()
    found = [*Path(out_dir).glob("*.tmp-*"), *(Path(out_dir) / RECORDS).glob("*.tmp-*")]
    out = []
    for p in found:
        with contextlib.suppress(FileNotFoundError):
            if now - p.stat().st_mtime >= older_than:
                out.append(p)
    return sorted(out)


def remove_stale_tmp_files(out_dir: Path, older_than: float = STALE_SECONDS) -> list[str]:
    """Delete :func:`stale_tmp_files`; returns their names. Concurrent writers (a Slurm
    array) are safe: their files are younger than ``older_than``."""
    gone = []
    for p in stale_tmp_files(out_dir, older_than):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            gone.append(p.name)
    return gone


def write_record(out_dir: Path, name: str, index: int, samples: int, config_hash: str) -> dict:
    """Write the record of the finished shard ``name`` (:class:`ShardRecord`); returns it
    as written."""
    path = out_dir / name
    rec = ShardRecord(
        name=name,
        index=index,
        samples=samples,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        config_hash=config_hash,
    ).model_dump()
    (out_dir / RECORDS).mkdir(exist_ok=True)
    write_json_atomic(out_dir / RECORDS / f"{name}.json", rec)
    return rec


def read_record(out_dir: Path, name: str) -> ShardRecord | None:
    """The record of shard ``name``; None when it is missing, corrupt or not a record
    (the shard then counts as incomplete)."""
    p = out_dir / RECORDS / f"{name}.json"
    try:
        return ShardRecord.model_validate_json(p.read_bytes())
    except (FileNotFoundError, ValidationError):
        return None


def shard_complete(out_dir: Path, name: str, config_hash: str, checksum: bool = True) -> bool:
    """True when the shard exists, has a record of this config, its recorded size and
    (unless ``checksum=False``) its recorded sha256."""
    rec = read_record(out_dir, name)
    path = out_dir / name
    return (
        rec is not None
        and rec.config_hash == config_hash
        and path.is_file()
        and path.stat().st_size == rec.bytes
        and (not checksum or sha256_file(path) == rec.sha256)
    )


def build_manifest(out_dir: Path, total: int, header: dict) -> dict | None:
    """Manifest from the records when all ``total`` shards have one; else ``None``."""
    shards = []
    for i in range(total):
        rec = read_record(out_dir, shard_name(i, total))
        if rec is None or rec.config_hash != header["config_hash"]:
            return None
        shards.append(rec.entry.model_dump())
    return {
        **header,
        "num_shards": total,
        "total_samples": sum(s["samples"] for s in shards),
        "shards": shards,
    }


def read_manifest(data_dir: Path) -> Manifest:
    """``manifest.json`` of ``data_dir``; an :class:`InputError` in one line when it is
    missing, corrupt, lacks a key or holds a value of the wrong type."""
    p = Path(data_dir) / MANIFEST
    if not p.is_file():
        raise InputError(f"{p}: no manifest (is {data_dir} a generated dataset, and complete?)")
    return parse_record(Manifest, read_mapping(p, "manifest"), f"{p}: manifest")


CHECKS = ("none", "size", "sha256")  # how far a shard file is checked against its manifest


def shard_file_problem(d: Path, entry: ShardEntry, check: str = "sha256") -> str | None:
    """What is wrong with the shard file of manifest entry ``entry`` in ``d`` (``None``:
    nothing): missing; with ``check`` ``size`` or ``sha256``, not the size the manifest says;
    with ``sha256``, not its checksum. The one check of a shard against its manifest (the
    verifier and the training loader)."""
    p = d / entry.name
    if not p.is_file():
        return f"{entry.name}: missing (listed in the manifest)"
    if check in ("size", "sha256") and p.stat().st_size != entry.bytes:
        return (
            f"{entry.name}: {p.stat().st_size} bytes, the manifest says {entry.bytes} "
            "(modified or half-written)"
        )
    if check == "sha256" and sha256_file(p) != entry.sha256:
        return f"{entry.name}: sha256 does not match the manifest (modified or corrupt)"
    return None


def verify(data_dir: str | Path, checksums: bool = True) -> tuple[list[str], int]:
    """Check a dataset against its manifest. Returns (problems, samples checked)."""
    d = Path(data_dir)
    m = read_manifest(d)
    problems: list[str] = []
    if m.schema_version not in SCHEMA_VERSIONS:
        problems.append(f"manifest schema_version {m.schema_version}: not one of {SCHEMA_VERSIONS}")
    n = 0
    for s in m.shards:
        problem = shard_file_problem(d, s, "sha256" if checksums else "size")
        if problem:
            problems.append(problem)
            continue
        try:
            with h5py.File(d / s.name, "r") as f:
                problems += _shard_problems(f, s, m)
        except OSError as e:
            problems.append(f"{s.name}: not a readable HDF5 file ({e})")
            continue
        except InputError as e:  # an attribute of the wrong type
            problems.append(str(e))
            continue
        n += s.samples
    return problems, n


def _shard_problems(f: h5py.File, s: ShardEntry, m: Manifest) -> list[str]:
    """What in the open shard ``f`` disagrees with its manifest entry ``s`` and ``m``."""
    h = ShardHeader.read(f)
    problems = []
    if h.schema_version != m.schema_version:
        problems.append(f"{s.name}: schema_version {h.schema_version}")
    if h.config_hash != m.config_hash:
        problems.append(f"{s.name}: made with another config than the manifest's")
    for name in (*stored_names(h.components), "meta"):
        if name not in f:
            problems.append(f"{s.name}: dataset {name!r} missing")
        elif f[name].shape[0] != s.samples:
            problems.append(
                f"{s.name}/{name}: {f[name].shape[0]} samples, manifest says {s.samples}"
            )
    return problems


def stray_files(data_dir: Path) -> list[str]:
    """Temporary files (shards, records, manifest, config) left by interrupted writers,
    relative to ``data_dir`` (reported by verify; the next generator run removes them)."""
    d = Path(data_dir)
    return sorted(str(p.relative_to(d)) for p in stale_tmp_files(d, older_than=0.0))


def progress_without_manifest(data_dir: Path) -> str:
    """What a dataset directory without a manifest holds: how many shards are complete
    by their records (config.yaml says how many there should be)."""
    import yaml

    d = Path(data_dir)
    cfg_path = d / "config.yaml"
    if not cfg_path.is_file():
        return f"{d}: no manifest and no config.yaml: not a dataset written by data_gen"
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        total = int(cfg["shards"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return f"{d}: no manifest, and {cfg_path} does not say how many shards there are"
    done = 0
    for i in range(total):
        rec = read_record(d, shard_name(i, total))
        p = d / shard_name(i, total)
        if rec is not None and p.is_file() and p.stat().st_size == rec.bytes:
            done += 1
    return (
        f"{d}: no manifest yet: {done} of {total} shards complete (by their records); run the "
        "same generator command again to finish the rest"
    )
