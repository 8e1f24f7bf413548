"""The HTTP service (FastAPI): per-user keys, uploads run through the network once, renders
composed from the stored maps at any strengths. The OpenAPI page is at ``/docs``.

Every request but the page, ``/healthz`` and the OpenAPI pages carries ``X-API-Key``.
Errors are JSON ``{"detail": "<one line>"}``: 401 no or wrong key, 404 an id that is not
the caller's (or does not exist: the two are not told apart), 413 too large, 422 not an
image / corrupt / wrong channel count / a value out of range, 429 quota reached, 503 queue
full (with ``Retry-After``), 507 the server's disk is full.
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from data_gen.components import ORDER, REGISTRY, check_names
from data_gen.errors import InputError, require
from data_gen.noise import NoiseModel
from data_gen.raw import RAW_SUFFIXES
from data_gen.sources import check_linearize
from residual_train.deploy import check_capture, default_iso, read_input_encoded
from residual_train.deploy.compose import MAX_STRENGTH, MIN_STRENGTH, Strengths, check_strength
from residual_train.serve import render
from residual_train.serve.jobs import Jobs
from residual_train.serve.keys import KeyStore
from residual_train.serve.store import ImageStore, lock_storage

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", *RAW_SUFFIXES)
# an upload's `encoding` form field -> read_input's `linearize`
ENCODINGS = {"auto": "auto", "srgb": True, "linear": False}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _TooLarge(BaseException):
    """Raised from the body stream when an upload passes the limit."""


class UploadLimit:
    """ASGI middleware: a body larger than ``max_bytes`` is refused with 413 — at once when
    ``Content-Length`` says so, else as soon as the stream passes the limit (so the upload
    is never written to disk in full)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send) -> None:
        body = b'{"detail":"upload larger than the limit of %d bytes"}' % self.max_bytes
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(send)


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


def served(model) -> tuple[list[str], list[str]]:
    """The model's components in physical order, and the arrays a render reads: the input,
    each component's residual ``R_<c>`` and each gain's slope ``S_<c>`` (docs/design.md §4)."""
    comps = [c for c in ORDER if c in model.heads]
    slopes = [f"S_{c}" for c in comps if REGISTRY[c].transport == "gain"]
    return comps, ["input", *(f"R_{c}" for c in comps), *slopes]


def receive(file: UploadFile, path: Path) -> None:
    """The uploaded body into ``path``, chunk by chunk."""
    with open(path, "wb") as f:
        while chunk := file.file.read(1 << 20):
            f.write(chunk)


@contextlib.contextmanager
def storage_errors():
    """The server's own file-system failures as one-line HTTP errors naming no server path:
    507 when its disk is full, 500 otherwise."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise HTTPException(507, "the server's disk is full; try again later") from None
        raise HTTPException(500, f"the server cannot store the upload ({e.strerror})") from None


def create_app(cfg: dict, model) -> FastAPI:
    """The service for ``model`` (a :class:`~residual_train.deploy.DeployedModel`) with the
    settings of ``conf/apps/serve.yaml``."""
    check_served(model)
    storage = Path(str(cfg["storage"])).expanduser()
    lock = lock_storage(storage)  # one server per storage: what a dead one left is ours
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
    max_bytes = int(float(cfg["max_upload_mb"]) * 2**20)
    quota = int(cfg["quota_images"])
    registry = Path(str(cfg["registry_dir"])) if cfg.get("registry_dir") else None
    linearize = check_linearize(cfg.get("linearize", "auto"))
    layout = model.card.get("layout", "rgb")

    app = FastAPI(
        title="residual-train",
        version=str(model.card.get("package_version", "")),
        description="Run the network once per image; render each component of the model at its own strength.",
    )
    app.add_middleware(UploadLimit, max_bytes=max_bytes)
    app.state.jobs, app.state.store, app.state.keys = jobs, store, keys
    app.state.recovered, app.state.swept, app.state.lock = recovered, swept, lock

    @app.exception_handler(InputError)
    async def _bad_input(_request, exc: InputError):
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
            got = (
                f" (got {e['input']!r})"
                if "input" in e and not isinstance(e["input"], dict)
                else ""
            )
            parts.append(f"{where}: {e.get('msg', 'invalid')}{got}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    def user(x_api_key: str | None = Header(default=None)) -> str:
        u = keys.user_of(x_api_key)
        if u is None:
            raise HTTPException(401, "missing or unknown API key (header X-API-Key)")
        return u

    def own(image_id: str, who: str) -> dict:
        m = store.owned(image_id, who)
        if m is None:
            raise HTTPException(404, f"no image {image_id!r} of yours")
        return m

    def done(image_id: str, who: str) -> dict:
        m = own(image_id, who)
        if m["status"] != "done":
            raise HTTPException(409, f"image {image_id} is {m['status']}, not done yet")
        return m

    def public(m: dict) -> dict:
        keep = ("id", "status", "error", "width", "height", "channels", "iso", "components")
        keep = (*keep, "encoding")
        return {
            **{k: m.get(k) for k in keep},
            "filename": m.get("filename"),
            "created": m.get("created"),
            "network_seconds": m.get("network_seconds"),
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (files("residual_train.serve") / "page.html").read_text()

    @app.get("/healthz")
    def healthz() -> dict:
        return {
            "ok": True,
            "queued": jobs.q.qsize(),
            "running": jobs.running,
            "network_runs": jobs.network_runs,
            "model": model.card.get("registry_version") or str(model.path),
        }

    @app.post("/v1/images", status_code=202)
    def upload(
        file: UploadFile = File(...),
        iso: float | None = Form(default=None),
        encoding: str | None = Form(default=None),
        who: str = Depends(user),
    ) -> dict:
        """An image (PNG, JPEG, TIFF or RAW) decoded to linear light as ``deploy`` decodes
        it: ``encoding`` ``auto`` (the server's ``linearize``; by default 8-bit files are
        sRGB, 16-bit and float ones linear), ``srgb`` or ``linear``."""
        if store.count(who) >= quota:
            raise HTTPException(429, f"quota of {quota} images reached; DELETE some first")
        if jobs.full():
            raise HTTPException(
                503, "the queue is full; try again later", headers={"Retry-After": "30"}
            )
        name = Path(file.filename or "upload").name  # a display name only, never a path
        suffix = Path(name).suffix.lower()
        if suffix not in SUFFIXES:
            raise HTTPException(422, f"{name!r}: not a supported image ({', '.join(SUFFIXES)})")
        if encoding is not None and encoding not in ENCODINGS:
            raise HTTPException(422, f"encoding = {encoding!r}: auto, srgb or linear")
        lin = linearize if encoding in (None, "auto") else ENCODINGS[encoding]
        if iso is None:  # recorded with the image: the model's default
            iso = default_iso(model.card)
        noise = model.noise_model(iso)  # InputError (422) outside the model's range
        image_id = store.new_id()
        # decode and check now (422 at once), from a private temporary copy of the upload
        with tempfile.TemporaryDirectory(dir=uploads) as tmp:
            path = Path(tmp) / f"upload{suffix}"
            with storage_errors():
                receive(file, path)
            x, enc = decode(path, name, lin, noise)
            record = {
                "owner": who,
                "status": "queued",
                "filename": name,
                "width": int(x.shape[2]),
                "height": int(x.shape[1]),
                "channels": int(x.shape[0]),
                "iso": float(iso),
                "encoding": enc,
                "components": list(model.heads),
                "noise_A": noise.A.tolist(),
                "noise_B": noise.B.tolist(),
            }
            with storage_errors():
                keep(image_id, record, x)
        if not jobs.submit(image_id):
            store.delete(image_id)
            raise HTTPException(
                503, "the queue is full; try again later", headers={"Retry-After": "30"}
            )
        return {"id": image_id, "status": "queued"}

    def decode(path: Path, name: str, lin, noise: NoiseModel) -> tuple[np.ndarray, str]:
        """The upload as linear ``(C, H, W)`` in the sensor's range, and its encoding; 422
        naming only ``name``."""
        try:
            x, enc = read_input_encoded(path, lin, model.channels, layout)
            check_capture(x, noise, repr(name))
        except InputError as e:
            raise HTTPException(422, " ".join(str(e).replace(str(path), name).split())) from None
        return x, enc

    def keep(image_id: str, record: dict, x: np.ndarray) -> None:
        """The record, then the input; a failure removes both (no job without an input)."""
        try:
            store.create(image_id, record)
            store.save_arrays(image_id, {"input": x})
        except BaseException:
            with contextlib.suppress(OSError, KeyError):
                store.delete(image_id)
            raise

    @app.get("/v1/images")
    def list_images(who: str = Depends(user)) -> list[dict]:
        return [public(m) for m in store.all() if m.get("owner") == who]

    @app.get("/v1/images/{image_id}")
    def status(image_id: str, who: str = Depends(user)) -> dict:
        return public(own(image_id, who))

    comps, names = served(model)
    limits = (MIN_STRENGTH, MAX_STRENGTH)  # as deploy and recompose take them
    strength_params = [
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
        for c in comps
    ]

    def strengths(request: Request) -> Strengths:
        """One strength per component of the model from the query (unnamed = 1)."""
        given = {c: request.query_params.get(c) for c in ORDER}
        given = {
            c: check_strength(c, v, limits, "query") for c, v in given.items() if v is not None
        }
        return Strengths.resolve(given, comps, limits, "query")

    @app.get("/v1/images/{image_id}/render", openapi_extra={"parameters": strength_params})
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
    ) -> Response:
        m = done(image_id, who)
        t0 = time.perf_counter()
        box = render.region((m["height"], m["width"]), x, y, w, h)
        arrays = store.arrays(image_id, names)
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

    @app.get("/v1/images/{image_id}/maps")
    def maps(
        image_id: str,
        scale: int = Query(1),
        format: str = Query("npz"),
        who: str = Depends(user),
    ) -> Response:
        """The input, the residual map of each component and the slope of each gain (and the
        noise parameters) for a client that composes itself by the rule of docs/design.md §4:
        ``npz`` (float32) or ``f16`` (the page's packed float16)."""
        m = done(image_id, who)
        arrays = store.arrays(image_id, names)
        small = {
            k: np.ascontiguousarray(v, np.float32)
            for k, v in render.maps_at(arrays, (0, m["height"], 0, m["width"]), int(scale)).items()
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
        import io

        buf = io.BytesIO()
        np.savez(
            buf,
            **small,
            noise_A=np.asarray(m["noise_A"], np.float32),
            noise_B=np.asarray(m["noise_B"], np.float32),
        )
        return Response(buf.getvalue(), media_type="application/octet-stream")

    @app.delete("/v1/images/{image_id}", status_code=204)
    def delete(image_id: str, who: str = Depends(user)) -> Response:
        own(image_id, who)
        store.delete(image_id)
        return Response(status_code=204)

    # ---- weights for devices: the registry the service was started from --------------------
    @app.get("/v1/registry/{name}/index.json")
    def registry_index(name: str, who: str = Depends(user)) -> Response:
        return _registry_file(name, "index.json")

    @app.get("/v1/registry/{name}/{version}/{filename}")
    def registry_file(name: str, version: str, filename: str, who: str = Depends(user)):
        return _registry_file(name, version, filename)

    def _registry_file(*parts: str) -> FileResponse:
        if registry is None:
            raise HTTPException(404, "this server publishes no registry")
        if not all(_NAME.match(p) for p in parts):
            raise HTTPException(404, "not found")
        p = registry.joinpath(*parts)
        if not p.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(p)

    return app
