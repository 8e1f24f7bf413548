"""``python -m residual_train.release.fetch url=URL model=NAME[:TAG] out_dir=DIR [key=API_KEY]``:
a device downloads a published model over HTTP and verifies it before using it.

``url`` is the root of a registry served over HTTP — the service's ``/v1/registry`` (send
the device's key) or any static web server holding a registry directory
(``REGISTRY/NAME/index.json``, ``REGISTRY/NAME/VERSION/<files>``). The index resolves the
tag; the card's sha256 must equal the index's, every file's sha256 the card's, and
``SHA256SUMS`` must agree: a tampered or truncated file is refused and nothing appears under
``out_dir``, which is filled atomically. It needs no torch (urllib and hashlib do the work).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from data_gen.cli import run_app
from data_gen.errors import InputError, require
from data_gen.paths import APPS, filled_atomically, require_new_dir
from data_gen.values import number
from residual_train.release.card import ModelCard
from residual_train.release.registry import FILES, TamperedError, read_sums

CHUNK = 1 << 20


def _get(url: str, key: str | None, timeout: float):
    req = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise InputError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise InputError(f"{url}: cannot connect ({reason})") from None


def _download(url: str, dest: Path, key: str | None, timeout: float) -> str:
    """Stream ``url`` into ``dest``; returns the sha256 of what arrived."""
    h = hashlib.sha256()
    with _get(url, key, timeout) as r, open(dest, "wb") as f:
        while chunk := r.read(CHUNK):
            h.update(chunk)
            f.write(chunk)
    return h.hexdigest()


def fetch(
    url: str, model: str, out_dir: str | Path, key: str | None = None, timeout: float = 60
) -> dict:
    """Download ``model`` (``NAME[:VERSION|ALIAS]``, default alias ``latest``) from the
    registry at ``url`` into ``out_dir``, verified; returns ``{name, version, files}``."""
    scheme = urllib.parse.urlparse(url).scheme
    require(scheme in ("http", "https"), f"url = {url!r}: an http:// or https:// registry root")
    out_dir = Path(out_dir)
    require_new_dir(out_dir)
    base = url.rstrip("/")
    name, _, tag = str(model).partition(":")
    tag = tag or "latest"
    with _get(f"{base}/{name}/index.json", key, timeout) as r:
        try:
            index = json.loads(r.read())
        except json.JSONDecodeError:
            raise InputError(f"{base}/{name}/index.json: not a registry index (not JSON)") from None
    versions, aliases = index.get("versions") or {}, index.get("aliases") or {}
    version = aliases.get(tag, tag)
    require(
        version in versions,
        f"{name}:{tag} is neither a version nor an alias at {base} "
        f"(versions {sorted(versions)}, aliases {sorted(aliases)})",
    )
    with filled_atomically(out_dir) as tmp:
        got = {f: _download(f"{base}/{name}/{version}/{f}", tmp / f, key, timeout) for f in FILES}
        if got["card.json"] != versions[version].get("card_sha256"):
            raise TamperedError(f"{base}/{name}/{version}/card.json: sha256 differs from the index")
        card = ModelCard.from_dict(json.loads((tmp / "card.json").read_text()), "card.json")
        for f, digest in card.files.items():
            if got.get(f) != digest:
                raise TamperedError(
                    f"{base}/{name}/{version}/{f}: sha256 differs from the card (tampered or "
                    "truncated); nothing was kept"
                )
        for f, digest in read_sums(tmp / "SHA256SUMS").items():
            if got.get(f) != digest:
                raise TamperedError(f"{base}/{name}/{version}/{f}: sha256 differs from SHA256SUMS")
    return {"name": name, "version": version, "out_dir": str(out_dir), "files": got}


def run(cfg: dict) -> dict:
    return fetch(
        str(cfg["url"]),
        str(cfg["model"]),
        str(cfg["out_dir"]),
        cfg["key"] or os.environ.get("RESIDUAL_TRAIN_KEY") or None,
        number(cfg["timeout"], "timeout", positive=True),
    )


def main() -> None:
    run_app(APPS, "fetch", run)


if __name__ == "__main__":
    main()
