"""``python -m residual_train.release.fetch url=URL model=NAME[:TAG] out_dir=DIR [key=API_KEY]``:
a device downloads a published model over HTTP and verifies it before using it.

``url`` is the root of a registry served over HTTP — the service's ``/v1/registry`` (send
the device's key) or any static web server holding a registry directory
(``REGISTRY/NAME/index.json``, ``REGISTRY/NAME/VERSION/<files>``). The index resolves the
tag; the card's sha256 must equal the index's, every file's sha256 the card's, and
``SHA256SUMS`` must agree: a tampered or truncated file is refused and nothing appears under
``out_dir``, which is filled atomically. It needs no torch (httpx and hashlib do the work);
a connection that fails is tried again (:data:`RETRIES` times) before the fetch gives up.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from data_gen.core.cli import run_app
from data_gen.core.environment import environment
from data_gen.core.errors import InputError, require
from data_gen.core.paths import APPS, filled_atomically, require_new_dir
from data_gen.core.values import number
from residual_train.release.card import ModelCard
from residual_train.release.registry import FILES, RegistryIndex, TamperedError, read_sums

CHUNK = 1 << 20
RETRIES = 3  # connection attempts after the first (httpx: with a growing pause between)


def client(key: str | None, timeout: float) -> httpx.Client:
    """The HTTP client of one fetch: the device's key (``X-API-Key``) on every request,
    ``timeout`` seconds per request, redirects followed, failed connections retried."""
    return httpx.Client(
        headers={"X-API-Key": key} if key else {},
        timeout=timeout,
        follow_redirects=True,
        transport=httpx.HTTPTransport(retries=RETRIES),
    )


@contextmanager
def _get(http: httpx.Client, url: str) -> Iterator[httpx.Response]:
    """The response to ``GET url``, streamed; an HTTP error status or a failed connection
    is an :class:`InputError` of one line."""
    try:
        with http.stream("GET", url) as r:
            if r.is_error:
                raise InputError(f"{url}: HTTP {r.status_code} {r.reason_phrase}")
            yield r
    except httpx.TransportError as e:
        raise InputError(f"{url}: cannot connect ({e})") from None


def _download(http: httpx.Client, url: str, dest: Path) -> str:
    """Stream ``url`` into ``dest``; returns the sha256 of what arrived."""
    h = hashlib.sha256()
    with _get(http, url) as r, open(dest, "wb") as f:
        for chunk in r.iter_bytes(CHUNK):
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
    with client(key, timeout) as http:
        where = f"{base}/{name}/index.json"
        with _get(http, where) as r:
            try:
                obj = json.loads(r.read())
            except json.JSONDecodeError:
                raise InputError(f"{where}: not a registry index (not JSON)") from None
        index = RegistryIndex.parse(obj, where)
        version = index.resolve(tag)
        require(
            version in index.versions,
            f"{name}:{tag} is neither a version nor an alias at {base} "
            f"(versions {sorted(index.versions)}, aliases {sorted(index.aliases)})",
        )
        with filled_atomically(out_dir) as tmp:
            got = {f: _download(http, f"{base}/{name}/{version}/{f}", tmp / f) for f in FILES}
            check(got, tmp, index.versions[version].card_sha256, f"{base}/{name}/{version}")
    return {"name": name, "version": version, "out_dir": str(out_dir), "files": got}


def check(got: dict[str, str], tmp: Path, card_sha256: str, where: str) -> None:
    """The downloaded files (``got``: name -> sha256, in ``tmp``) against the index's card
    sha256, the card's file hashes and ``SHA256SUMS``; :class:`TamperedError` otherwise."""
    if got["card.json"] != card_sha256:
        raise TamperedError(f"{where}/card.json: sha256 differs from the index")
    card = ModelCard.from_dict(json.loads((tmp / "card.json").read_text()), "card.json")
    for f, digest in card.files.items():
        if got.get(f) != digest:
            raise TamperedError(
                f"{where}/{f}: sha256 differs from the card (tampered or truncated); nothing "
                "was kept"
            )
    for f, digest in read_sums(tmp / "SHA256SUMS").items():
        if got.get(f) != digest:
            raise TamperedError(f"{where}/{f}: sha256 differs from SHA256SUMS")


def run(cfg: dict) -> dict:
    return fetch(
        str(cfg["url"]),
        str(cfg["model"]),
        str(cfg["out_dir"]),
        cfg["key"] or environment().registry_key,
        number(cfg["timeout"], "timeout", positive=True),
    )


def main() -> None:
    run_app(APPS, "fetch", run)


if __name__ == "__main__":
    main()
