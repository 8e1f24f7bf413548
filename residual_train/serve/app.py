"""The HTTP service (FastAPI): per-user keys, uploads run through the network once, renders
composed from the stored maps at any strengths. The OpenAPI page is at ``/docs``.

Every request but the page, ``/healthz`` and the OpenAPI pages carries ``X-API-Key``.
Errors are JSON ``{"detail": "<one line>"}``: 401 no or wrong key, 404 an id that is not
the caller's (or does not exist: the two are not told apart), 413 too large, 422 not an
image / corrupt / wrong channel count / a value out of range, 429 quota reached, 503 queue
full (with ``Retry-After``), 507 the server's disk is full.

The routes live in :mod:`residual_train.serve.routes`, one router per job; the state they
share is one :class:`~residual_train.serve.service.Service` on ``app.state.service``.
"""

from __future__ import annotations

from fastapi import FastAPI

from data_gen.components import ORDER, REGISTRY, check_names
from data_gen.core.errors import require
from residual_train.serve import errors
from residual_train.serve.limits import UploadLimit
from residual_train.serve.routes import images, pages, registry, renders
from residual_train.serve.service import Service, served

__all__ = ["UploadLimit", "check_served", "create_app", "served"]


def check_served(model) -> None:
    """Refuse a model unless the service applies every component it has: renders compose
    every component of the chain (one strength each), so a model's heads must be known
    components, listed once, in physical order."""
    heads = list(model.heads)
    unknown = [h for h in heads if h not in REGISTRY]
    require(
        bool(heads) and not unknown,
        f"model = {str(model.path)!r} has heads {', '.join(heads) or 'none'}; the service "
        f"composes the components {', '.join(ORDER)}",
    )
    check_names(heads)


def create_app(cfg: dict, model) -> FastAPI:
    """The service for ``model`` (a :class:`~residual_train.deploy.DeployedModel`) with the
    settings of ``conf/apps/serve.yaml``."""
    check_served(model)
    svc = Service.start(cfg, model)
    app = FastAPI(
        title="residual-train",
        version=model.card.package_version,
        description="Run the network once per image; render each component of the model at its own strength.",
    )
    app.add_middleware(UploadLimit, max_bytes=svc.max_bytes)
    app.state.service = svc
    app.state.jobs, app.state.store, app.state.keys = svc.jobs, svc.store, svc.keys
    app.state.recovered, app.state.swept, app.state.lock = svc.recovered, svc.swept, svc.lock
    errors.install(app)
    app.include_router(pages.router)
    app.include_router(images.router)
    app.include_router(renders.router(svc.components))
    app.include_router(registry.router)
    return app
