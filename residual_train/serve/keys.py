"""Users and their API keys: a SQLite table of sha256 hashes (a key is shown once, when
it is made, and never stored).

A key is 32 random bytes (``rt_`` + URL-safe base64), so a plain sha256 is enough to store
it: there is nothing to brute-force. Lookups go by the hash.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from data_gen.core.errors import InputError, require

_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def database_error(e: sqlite3.DatabaseError, path: Path) -> Exception:
    """One line for a failed SQLite call on ``path``, naming it."""
    text = str(e)
    if "disk is full" in text:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if "readonly" in text or "unable to open" in text:
        return OSError(errno.EACCES, f"cannot write the key database ({text})", str(path))
    if isinstance(e, sqlite3.OperationalError) and "locked" in text:
        return OSError(errno.EBUSY, f"the key database is busy ({text})", str(path))
    return InputError(f"{path}: not a readable key database ({text})")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """``storage/keys.sqlite``: one row per key (user, sha256, created, revoked)."""

    def __init__(self, storage: str | Path) -> None:
        self.path = Path(storage) / "keys.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS keys (digest TEXT PRIMARY KEY, user TEXT NOT NULL,"
                " created REAL NOT NULL, revoked REAL)"
            )

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One short-lived connection per call (safe from any thread of the server), one
        transaction; SQLite's failures as what they are: a full disk or an unwritable file
        (:class:`OSError`), a file that is not a key database (:class:`InputError`)."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level="IMMEDIATE")
            try:
                with db:
                    yield db
            finally:
                db.close()
        except sqlite3.DatabaseError as e:
            raise database_error(e, self.path) from None

    def add(self, user: str) -> str:
        """A new key for ``user`` (returned once; only its hash is kept)."""
        require(
            bool(_USER.match(user)),
            f"user = {user!r}: 1-64 letters, digits, '.', '_', '@' or '-'",
        )
        key = "rt_" + secrets.token_urlsafe(32)
        with self._db() as db:
            db.execute(
                "INSERT INTO keys (digest, user, created) VALUES (?, ?, ?)",
                (_digest(key), user, time.time()),
            )
        return key

    def revoke(self, user: str) -> int:
        """Revoke every key of ``user``; returns how many were active."""
        with self._db() as db:
            n = db.execute(
                "UPDATE keys SET revoked = ? WHERE user = ? AND revoked IS NULL",
                (time.time(), user),
            ).rowcount
        require(n > 0, f"user = {user!r} has no active key in {self.path}")
        return n

    def user_of(self, key: str | None) -> str | None:
        """The user an active key belongs to, else None."""
        if not key:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT user FROM keys WHERE digest = ? AND revoked IS NULL", (_digest(key),)
            ).fetchone()
        return row[0] if row else None

    def users(self) -> list[dict]:
        with self._db() as db:
            rows = db.execute(
                "SELECT user, COUNT(*), SUM(revoked IS NULL) FROM keys GROUP BY user ORDER BY user"
            ).fetchall()
        return [{"user": u, "keys": n, "active": int(a or 0)} for u, n, a in rows]
