"""The state every route of the service shares (one :class:`Service` per app, on
``app.state.service``) and the dependencies that read it: the caller's user from its API
key, and the caller's own images."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, Header, HTTPException, Request

from data_gen.components import ORDER, REGISTRY
from data_gen.sources import check_linearize
from residual_train.serve.jobs import Jobs
from residual_train.serve.keys import KeyStore
from residual_train.serve.store import ImageStore, lock_storage


def served(model) -> tuple[list[str], list[str]]:
    """The model's components in physical order, and the arrays a render reads: the input,
    each component's residual ``R_<c>`` and each gain's slope ``S_<c>`` (docs/design.md §4)."""
    comps = [c for c in ORDER if c in model.heads]
    slopes = [f"S_{c}" for c in comps if REGISTRY[c].transport == "gain"]
    return comps, ["input", *(f"R_{c}" for c in comps), *slopes]


@dataclass
class Service:
    """One running service: its model, storage (keys, images, upload copies), job pool and
    limits (settings of ``conf/apps/serve.yaml``).

    ``components``: the model's components in physical order; ``arrays``: what a render
    reads (:func:`served`); ``max_bytes``: the upload limit (bytes); ``quota``: images per
    user; ``registry``: the registry devices may fetch from (None: none published);
    ``recovered`` / ``swept``: jobs resumed and leftovers removed at start."""

    model: object
    keys: KeyStore
    store: ImageStore
    jobs: Jobs
    uploads: Path
    max_bytes: int
    quota: int
    registry: Path | None
    linearize: bool | str
    components: list[str]
    arrays: list[str]
    recovered: list[str]
    swept: list[str]
    lock: int

    @classmethod
    def start(cls, cfg: dict, model) -> Service:
        """Take the storage (one server per storage: what a dead one left is ours), clear
        the upload copies it left, sweep the store and resume its unfinished jobs."""
        storage = Path(str(cfg["storage"])).expanduser()
        lock = lock_storage(storage)
        keys, store = KeyStore(storage), ImageStore(storage)
        uploads = storage / "uploads"  # private copies while an upload is checked
        shutil.rmtree(uploads, ignore_errors=True)  # a killed server's copies
        uploads.mkdir(parents=True, exist_ok=True)
        swept = store.sweep()
        jobs = Jobs(
            store,
            model,
            int(cfg["workers"]),
            int(cfg["queue_size"]),
            int(cfg["tile"]),
            int(cfg["overlap"]),
        )
        recovered = jobs.recover()
        registry = cfg["registry_dir"]
        comps, arrays = served(model)
        return cls(
            model=model,
            keys=keys,
            store=store,
            jobs=jobs,
            uploads=uploads,
            max_bytes=int(float(cfg["max_upload_mb"]) * 2**20),
            quota=int(cfg["quota_images"]),
            registry=Path(str(registry)) if registry else None,
            linearize=check_linearize(cfg["linearize"]),
            components=comps,
            arrays=arrays,
            recovered=recovered,
            swept=swept,
            lock=lock,
        )


def service(request: Request) -> Service:
    """The app's :class:`Service` (a dependency)."""
    return request.app.state.service


def user(x_api_key: str | None = Header(default=None), svc: Service = Depends(service)) -> str:
    """The caller's user name from its ``X-API-Key``; 401 without a known key."""
    u = svc.keys.user_of(x_api_key)
    if u is None:
        raise HTTPException(401, "missing or unknown API key (header X-API-Key)")
    return u


def own(svc: Service, image_id: str, who: str) -> dict:
    """The record of image ``image_id`` of ``who``; 404 when it is not theirs (or does not
    exist: the two are not told apart)."""
    m = svc.store.owned(image_id, who)
    if m is None:
        raise HTTPException(404, f"no image {image_id!r} of yours")
    return m


def done(svc: Service, image_id: str, who: str) -> dict:
    """:func:`own`, and 409 unless the network has run on it."""
    m = own(svc, image_id, who)
    if m["status"] != "done":
        raise HTTPException(409, f"image {image_id} is {m['status']}, not done yet")
    return m
