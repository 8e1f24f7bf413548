"""Where the service keeps images: one directory per image under ``storage/images``.

``IMAGE/meta.json`` (owner, status, size, ISO, noise parameters, error), the upload as
received (``upload.<ext>``), and once the network has run the input and residual maps as
float32 ``.npy`` ``(C, H, W)`` (memory-mapped when rendering, so a region reads only its
rows). Every file appears under its final name only when complete (temporary name, then
rename); ``meta.json`` says ``done`` only after the maps are in place. Ids are 128-bit
random tokens, checked against their alphabet before they touch a path.
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

from data_gen.shards import read_mapping, write_json_atomic

_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
STATES = ("queued", "running", "done", "failed")


def valid_id(image_id: str) -> bool:
    return bool(_ID.match(image_id))


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
        """The record when ``user`` owns it; None otherwise (no hint that it exists)."""
        m = self.meta(image_id)
        return m if m is not None and m.get("owner") == user else None

    def update(self, image_id: str, **changes) -> dict | None:
        with self._lock:
            m = self.meta(image_id)
            if m is None:  # deleted meanwhile
                return None
            m.update(changes, updated=time.time())
            write_json_atomic(self.dir(image_id) / "meta.json", m)
            return m

    def count(self, user: str) -> int:
        return sum(1 for m in self.all() if m.get("owner") == user)

    def all(self) -> list[dict]:
        out = []
        for d in sorted(self.root.iterdir()):
            if valid_id(d.name) and (d / "meta.json").is_file():
                with contextlib.suppress(Exception):  # a record being deleted
                    out.append(read_mapping(d / "meta.json", "image record"))
        return out

    def save_arrays(self, image_id: str, arrays: dict[str, np.ndarray]) -> None:
        """``NAME.npy`` per array, each written whole under a temporary name first."""
        d = self.dir(image_id)
        for name, a in arrays.items():
            tmp = d / f".{name}.npy.tmp-{os.getpid()}-{threading.get_ident()}"
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(a, np.float32))
            os.replace(tmp, d / f"{name}.npy")

    def arrays(self, image_id: str, names: list[str]) -> dict[str, np.ndarray]:
        """Memory-mapped ``(C, H, W)`` float32 arrays (read-only)."""
        d = self.dir(image_id)
        return {n: np.load(d / f"{n}.npy", mmap_mode="r") for n in names}

    def delete(self, image_id: str) -> None:
        d = self.dir(image_id)
        gone = d.with_name(f".deleted-{image_id}-{secrets.token_hex(4)}")
        os.replace(d, gone)  # atomic: the id is gone at once, files follow
        shutil.rmtree(gone, ignore_errors=True)
