"""Weights for devices: the registry the service was started from, file by file
(``python -m residual_train.release.fetch`` reads it)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from residual_train.serve.service import Service, service, user

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

router = APIRouter()


def send_file(svc: Service, *parts: str) -> FileResponse:
    """The file ``parts`` under the registry; 404 without one, for a name that is not a
    plain registry name (no path tricks) and for a file that does not exist."""
    if svc.registry is None:
        raise HTTPException(404, "this server publishes no registry")
    if not all(_NAME.match(p) for p in parts):
        raise HTTPException(404, "not found")
    p = svc.registry.joinpath(*parts)
    if not p.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(p)


@router.get("/v1/registry/{name}/index.json")
def registry_index(
    name: str, who: str = Depends(user), svc: Service = Depends(service)
) -> FileResponse:
    return send_file(svc, name, "index.json")


@router.get("/v1/registry/{name}/{version}/{filename}")
def registry_file(
    name: str,
    version: str,
    filename: str,
    who: str = Depends(user),
    svc: Service = Depends(service),
) -> FileResponse:
    return send_file(svc, name, version, filename)
