"""What a finished image gives without the network: its composition at strengths (a
region, a scale, an encoding) and its maps for a client that composes itself."""

from __future__ import annotations

import io
import time

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from data_gen.components import ORDER, REGISTRY
from data_gen.noise import NoiseModel
from residual_train.deploy.compose import MAX_STRENGTH, MIN_STRENGTH, Strengths, check_strength
from residual_train.serve import render
from residual_train.serve.service import Service, done, service, user

LIMITS = (MIN_STRENGTH, MAX_STRENGTH)  # as deploy and recompose take them


def strength_parameters(components: list[str]) -> list[dict]:
    """The OpenAPI query parameters of the strengths of ``components``."""
    return [
        {
            "name": c,
            "in": "query",
            "required": False,
            "schema": {
                "type": "number",
                "minimum": MIN_STRENGTH,
                "maximum": MAX_STRENGTH,
                "default": 1,
            },
            "description": f"strength of the {c} correction (1 = fully corrected, 0 = left "
            "in, below 0 adds more of it, above 1 over-corrects)",
        }
        for c in components
    ]


def strengths(request: Request, svc: Service = Depends(service)) -> Strengths:
    """One strength per component of the model from the query (unnamed = 1)."""
    given = {c: request.query_params.get(c) for c in ORDER}
    given = {c: check_strength(c, v, LIMITS, "query") for c, v in given.items() if v is not None}
    return Strengths.resolve(given, svc.components, LIMITS, "query")


def render_image(
    image_id: str,
    st: Strengths = Depends(strengths),
    x: int | None = Query(None),
    y: int | None = Query(None),
    w: int | None = Query(None),
    h: int | None = Query(None),
    format: str = Query("png"),
    scale: int = Query(1),
    who: str = Depends(user),
    svc: Service = Depends(service),
) -> Response:
    m = done(svc, image_id, who)
    t0 = time.perf_counter()
    box = render.region((m["height"], m["width"]), x, y, w, h)
    arrays = svc.store.arrays(image_id, svc.arrays)
    maps = render.maps_at(arrays, box, int(scale))
    body = render.render(maps, st, NoiseModel(m["noise_A"], m["noise_B"]), format)
    ms = (time.perf_counter() - t0) * 1e3
    return Response(
        body,
        media_type=render.FORMATS[format],
        headers={
            "X-Render-Ms": f"{ms:.1f}",
            "X-Color-Encoding": render.ENCODED[format],
            "Cache-Control": "no-store",
        },
    )


def maps(
    image_id: str,
    scale: int = Query(1),
    format: str = Query("npz"),
    who: str = Depends(user),
    svc: Service = Depends(service),
) -> Response:
    """The input, the residual map of each component and the slope of each gain (and the
    noise parameters) for a client that composes itself by the rule of docs/design.md §4:
    ``npz`` (float32) or ``f16`` (the page's packed float16)."""
    m = done(svc, image_id, who)
    names, comps = svc.arrays, svc.components
    arrays = svc.store.arrays(image_id, names)
    whole = (0, m["height"], 0, m["width"])
    small = {
        k: np.ascontiguousarray(v, np.float32)
        for k, v in render.maps_at(arrays, whole, int(scale)).items()
    }
    c, hh, ww = small["input"].shape
    header = {
        "width": ww,
        "height": hh,
        "channels": c,
        "scale": int(scale),
        "noise_A": m["noise_A"],
        "noise_B": m["noise_B"],
        "components": comps,  # physical order
        "kinds": [REGISTRY[c].transport for c in comps],  # gain | spread | signal
        "arrays": names,
        "shapes": {k: list(small[k].shape) for k in names},
    }
    if format == "f16":
        return Response(render.pack_f16(small, header), media_type="application/octet-stream")
    if format != "npz":
        raise HTTPException(422, f"format = {format!r}: use npz or f16")
    buf = io.BytesIO()
    np.savez(
        buf,
        **small,
        noise_A=np.asarray(m["noise_A"], np.float32),
        noise_B=np.asarray(m["noise_B"], np.float32),
    )
    return Response(buf.getvalue(), media_type="application/octet-stream")


def router(components: list[str]) -> APIRouter:
    """The routes for a model of ``components`` (its strengths are documented as query
    parameters of the render)."""
    r = APIRouter()
    r.add_api_route(
        "/v1/images/{image_id}/render",
        render_image,
        methods=["GET"],
        openapi_extra={"parameters": strength_parameters(components)},
    )
    r.add_api_route("/v1/images/{image_id}/maps", maps, methods=["GET"])
    return r
