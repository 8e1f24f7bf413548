"""Users and their API keys: a SQLite table of sha256 hashes (a key is shown once, when
it is made, and never stored).

A key is 32 random bytes (``rt_`` + URL-safe base64), so a plain sha256 is enough to store
it: there is nothing to brute-force. Lookups go by the hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from pathlib import Path

from data_gen.errors import require

_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


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

    def _db(self) -> sqlite3.Connection:
        # one short-lived connection per call: safe from any thread of the server
        return sqlite3.connect(self.path, timeout=30, isolation_level="IMMEDIATE")

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
