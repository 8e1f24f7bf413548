"""Uploads (decoded and checked at once, then queued for the network), their status and
their deletion."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Response, UploadFile

from data_gen.core.errors import InputError
from data_gen.noise import NoiseModel
from data_gen.raw import RAW_SUFFIXES
from residual_train.deploy.io import check_capture, read_input_encoded
from residual_train.serve.errors import storage_errors
from residual_train.serve.service import Service, own, service, user
from residual_train.serve.store import ImageRecord

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", *RAW_SUFFIXES)
# an upload's `encoding` form field -> read_input's `linearize`
ENCODINGS = {"auto": "auto", "srgb": True, "linear": False}
# what a client sees of an image's record
PUBLIC = (
    *("id", "status", "error", "width", "height", "channels", "iso", "components", "encoding"),
    *("filename", "created", "network_seconds"),
)

router = APIRouter()


def public(r: ImageRecord) -> dict:
    """The client's view of a record (a key an older record lacks is null)."""
    fields = r.model_dump()
    return {k: fields[k] for k in PUBLIC}


def queue_full() -> HTTPException:
    return HTTPException(503, "the queue is full; try again later", headers={"Retry-After": "30"})


def receive(file: UploadFile, path: Path) -> None:
    """The uploaded body into ``path``, chunk by chunk."""
    with open(path, "wb") as f:
        while chunk := file.file.read(1 << 20):
            f.write(chunk)


def decode(svc: Service, path: Path, name: str, lin, noise: NoiseModel) -> tuple[np.ndarray, str]:
    """The upload as linear ``(C, H, W)`` in the sensor's range, and its encoding; 422
    naming only ``name``."""
    model = svc.model
    try:
        x, enc = read_input_encoded(path, lin, model.channels, model.card.layout)
        check_capture(x, noise, repr(name))
    except InputError as e:
        raise HTTPException(422, " ".join(str(e).replace(str(path), name).split())) from None
    return x, enc


def keep(svc: Service, image_id: str, record: dict, x: np.ndarray) -> None:
    """The record, then the input; a failure removes both (no job without an input)."""
    try:
        svc.store.create(image_id, record)
        svc.store.save_arrays(image_id, {"input": x})
    except BaseException:
        with contextlib.suppress(OSError, KeyError):
            svc.store.delete(image_id)
        raise


def record(who: str, name: str, x: np.ndarray, iso: float, enc: str, svc: Service, noise) -> dict:
    """The stored record of a new upload (queued)."""
    return {
        "owner": who,
        "status": "queued",
        "filename": name,
        "width": int(x.shape[2]),
        "height": int(x.shape[1]),
        "channels": int(x.shape[0]),
        "iso": float(iso),
        "encoding": enc,
        "components": list(svc.model.heads),
        "noise_A": noise.A.tolist(),
        "noise_B": noise.B.tolist(),
    }


@router.post("/v1/images", status_code=202)
def upload(
    file: UploadFile = File(...),
    iso: float | None = Form(default=None),
    encoding: str | None = Form(default=None),
    who: str = Depends(user),
    svc: Service = Depends(service),
) -> dict:
    """An image (PNG, JPEG, TIFF or RAW) decoded to linear light as ``deploy`` decodes
    it: ``encoding`` ``auto`` (the server's ``linearize``; by default 8-bit files are
    sRGB, 16-bit and float ones linear), ``srgb`` or ``linear``."""
    if svc.store.count(who) >= svc.quota:
        raise HTTPException(429, f"quota of {svc.quota} images reached; DELETE some first")
    if svc.jobs.full():
        raise queue_full()
    name = Path(file.filename or "upload").name  # a display name only, never a path
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise HTTPException(422, f"{name!r}: not a supported image ({', '.join(SUFFIXES)})")
    if encoding is not None and encoding not in ENCODINGS:
        raise HTTPException(422, f"encoding = {encoding!r}: auto, srgb or linear")
    lin = svc.linearize if encoding in (None, "auto") else ENCODINGS[encoding]
    if iso is None:  # recorded with the image: the model's default
        iso = svc.model.card.sensor_noise().default_iso()
    noise = svc.model.noise_model(iso)  # InputError (422) outside the model's range
    image_id = svc.store.new_id()
    # decode and check now (422 at once), from a private temporary copy of the upload
    with tempfile.TemporaryDirectory(dir=svc.uploads) as tmp:
        path = Path(tmp) / f"upload{suffix}"
        with storage_errors():
            receive(file, path)
        x, enc = decode(svc, path, name, lin, noise)
        with storage_errors():
            keep(svc, image_id, record(who, name, x, iso, enc, svc, noise), x)
    if not svc.jobs.submit(image_id):
        svc.store.delete(image_id)
        raise queue_full()
    return {"id": image_id, "status": "queued"}


@router.get("/v1/images")
def list_images(who: str = Depends(user), svc: Service = Depends(service)) -> list[dict]:
    return [public(r) for r in svc.store.all() if r.owner == who]


@router.get("/v1/images/{image_id}")
def status(image_id: str, who: str = Depends(user), svc: Service = Depends(service)) -> dict:
    m = own(svc, image_id, who)  # 404 unless it is theirs
    return public(ImageRecord.of(m, svc.store.dir(image_id) / "meta.json"))


@router.delete("/v1/images/{image_id}", status_code=204)
def delete(image_id: str, who: str = Depends(user), svc: Service = Depends(service)) -> Response:
    own(svc, image_id, who)
    svc.store.delete(image_id)
    return Response(status_code=204)
