"""Where the service keeps images: one directory per image under ``storage/images``.

``IMAGE/meta.json`` (owner, status, size, ISO, noise parameters, error), the upload as
received (``upload.<ext>``), and once the network has run the input and residual maps as
float32 ``.npy`` ``(C, H, W)`` (memory-mapped when rendering, so a region reads only its
rows). Every file appears under its final name only when complete (temporary name, then
rename); ``meta.json`` says ``done`` only after the maps are in place. Ids are 128-bit
random tokens, checked against their alphabet before they touch a path. A record is read
back as an :class:`ImageRecord`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from data_gen.core.errors import InputError
from data_gen.core.paths import os_error_at, written_atomically
from data_gen.core.typed import Record, parse
from data_gen.shards import read_mapping, write_json_atomic

_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
STATES = ("queued", "running", "done", "failed")


def valid_id(image_id: str) -> bool:
    return bool(_ID.match(image_id))


def lock_storage(storage: Path) -> int:
    """Hold ``storage/server.lock`` for this process's life (an open descriptor with an
    exclusive ``flock``; the kernel drops it when the process dies, ``kill -9`` included).
    One server per storage: what a killed one left behind can then be cleaned at start."""
    import fcntl

    storage.mkdir(parents=True, exist_ok=True)
    path = storage / "server.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise InputError(
            f"storage = {str(storage)!r} is in use by another server (pid {holder}); one "
            "server per storage directory"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as e:
        os.close(fd)
        raise os_error_at(e, path) from None
    return fd


class ImageRecord(Record):
    """An image's ``meta.json``, typed: written by the upload (owner, size, ISO, encoding,
    components, the sensor's noise at that ISO) and the store (id, times), changed by the
    job (status, error, note, network time). A key an older record lacks is null."""

    id: str
    status: str | None = None  # one of STATES
    error: str | None = None  # why it failed (one line)
    width: int | None = None
    height: int | None = None
    channels: int | None = None
    iso: float | None = None
    components: list[str] | None = None
    encoding: str | None = None  # srgb or linear: what the upload was decoded from
    filename: str | None = None  # the upload's display name
    created: float | None = None  # seconds since the epoch
    network_seconds: float | None = None
    owner: str | None = None
    noise_A: list[float] | None = None
    noise_B: list[float] | None = None
    updated: float | None = None
    note: str | None = None

    @classmethod
    def of(cls, meta: dict, where: str | Path) -> ImageRecord:
        """``meta`` (the ``meta.json`` at ``where``) typed; one line naming the file and
        the key and the value otherwise."""
        return parse(cls, meta, f"{where}: image record")


class ImageStore:
    def __init__(self, storage: str | Path) -> None:
        self.root = Path(storage) / "images"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # meta.json read-modify-write

    def new_id(self) -> str:
        while True:
            i = secrets.token_urlsafe(16)
            if valid_id(i) and not (self.root / i).exists():
                return i

    def dir(self, image_id: str) -> Path:
        if not valid_id(image_id):  # never a path from a client's string
            raise KeyError(image_id)
        return self.root / image_id

    def create(self, image_id: str, meta: dict) -> Path:
        d = self.dir(image_id)
        d.mkdir()
        now = time.time()
        write_json_atomic(d / "meta.json", {**meta, "id": image_id, "created": now, "updated": now})
        return d

    def meta(self, image_id: str) -> dict | None:
        try:
            d = self.dir(image_id)
        except KeyError:
            return None
        if not (d / "meta.json").is_file():
            return None
        return read_mapping(d / "meta.json", "image record")

    def owned(self, image_id: str, user: str) -> dict | None:
        """The record (``meta.json`` as stored) when ``user`` owns it; None otherwise (no
        hint that it exists)."""
        m = self.meta(image_id)
        if m is None:
            return None
        return m if ImageRecord.of(m, self.dir(image_id) / "meta.json").owner == user else None

    def update(self, image_id: str, **changes) -> ImageRecord | None:
        """``changes`` written into the record (its other keys kept as they are); the
        record as it now is, or None when the image was deleted meanwhile."""
        with self._lock:
            m = self.meta(image_id)
            if m is None:  # deleted meanwhile
                return None
            m.update(changes, updated=time.time())
            path = self.dir(image_id) / "meta.json"
            write_json_atomic(path, m)
            return ImageRecord.of(m, path)

    def count(self, user: str) -> int:
        return sum(1 for r in self.all() if r.owner == user)

    def all(self) -> list[ImageRecord]:
        """Every image's record, by id."""
        out = []
        for d in sorted(self.root.iterdir()):
            if valid_id(d.name) and (d / "meta.json").is_file():
                path = d / "meta.json"
                with contextlib.suppress(OSError, InputError):  # a record being deleted
                    out.append(ImageRecord.of(read_mapping(path, "image record"), path))
        return out

    def save_arrays(self, image_id: str, arrays: dict[str, np.ndarray]) -> None:
        """``NAME.npy`` per array, each written whole under a temporary name first."""
        d = self.dir(image_id)
        for name, a in arrays.items():
            with written_atomically(d / f"{name}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(a, np.float32))

    def arrays(self, image_id: str, names: list[str]) -> dict[str, np.ndarray]:
        """Memory-mapped ``(C, H, W)`` float32 arrays (read-only)."""
        d = self.dir(image_id)
        return {n: np.load(d / f"{n}.npy", mmap_mode="r") for n in names}

    def has_arrays(self, image_id: str, names: list[str]) -> bool:
        d = self.dir(image_id)
        return all((d / f"{n}.npy").is_file() for n in names)

    def sweep(self) -> list[str]:
        """What a killed server left behind (call it holding :func:`lock_storage`): half
        deleted images (``.deleted-*``), image directories without a record, and the
        temporary files of arrays being written. Returns what was removed."""
        removed = []
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".deleted-") or (
                d.is_dir() and valid_id(d.name) and not (d / "meta.json").is_file()
            ):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
            elif d.is_dir() and valid_id(d.name):
                for f in d.glob(".*.tmp-*"):
                    f.unlink(missing_ok=True)
                    removed.append(f"{d.name}/{f.name}")
        return removed

    def delete(self, image_id: str) -> None:
        d = self.dir(image_id)
        gone = d.with_name(f".deleted-{image_id}-{secrets.token_hex(4)}")
        os.replace(d, gone)  # atomic: the id is gone at once, files follow
        shutil.rmtree(gone, ignore_errors=True)
