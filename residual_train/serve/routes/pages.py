"""The page (sliders that compose in the browser) and the health check."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from residual_train.serve.service import Service, service

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> str:
    return (files("residual_train.serve") / "page.html").read_text()


@router.get("/healthz")
def healthz(svc: Service = Depends(service)) -> dict:
    jobs = svc.jobs
    return {
        "ok": True,
        "queued": jobs.q.qsize(),
        "running": jobs.running,
        "network_runs": jobs.network_runs,
        "model": svc.model.card.registry_version or str(svc.model.path),
    }
