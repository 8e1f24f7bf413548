"""The correction service on a real uvicorn server on loopback: keys, uploads, renders that
never run the network, errors, restarts, isolation between users, device fetch."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from data_gen.noise import NoiseModel
from data_gen.shards import sha256_file
from residual_train.deploy.compose import compose_reference
from residual_train.serve.render import area_downscale, to_srgb8
from tests.conftest import ROOT, chromium_driver, run_if

# httpx's default read timeout (5 s) is a timed assertion in disguise: a first render
# compiles the composition kernel, which on a loaded machine takes longer. A hang guard
# instead (a call may still pass its own timeout); a new connection per call, as before.
HANG_GUARD = 120.0
http = SimpleNamespace(
    **{
        m: functools.partial(getattr(httpx, m), timeout=HANG_GUARD)
        for m in ("get", "post", "delete")
    }
)

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m residual_train.serve ARGS`` to its end (a refusal, or a keys command)."""
    return subprocess.run(
        [PY, "-m", "residual_train.serve", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def keys(storage: Path, *args: str) -> subprocess.CompletedProcess:
    return serve_cli("keys", *args, f"storage={storage}")


def new_key(storage: Path, user: str) -> str:
    r = keys(storage, "add", user)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]  # the key is the last line, shown once


class Server:
    """``python -m residual_train.serve`` in a subprocess; stopped by :meth:`stop`."""

    def __init__(self, storage: Path, *overrides: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(storage.parent / f"server-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "residual_train.serve",
                f"port={self.port}",
                f"storage={storage}",
                "log_level=warning",
                *overrides,
            ],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, Path(self.log.name).read_text()
            with contextlib.suppress(httpx.HTTPError):
                if http.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError("the server did not start: " + Path(self.log.name).read_text())

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.log.close()


def png(h: int, w: int, seed: int = 0, channels: int = 3) -> bytes:
    a = (np.random.default_rng(seed).random((h, w, channels)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a if channels > 1 else a[..., 0]).save(buf, "PNG")
    return buf.getvalue()


def tiff_f32(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.asarray(a, np.float32), photometric="rgb")
    return buf.getvalue()


def upload(
    url: str,
    key: str,
    data: bytes,
    name: str = "img.png",
    iso: float | None = 1600,
    form: dict | None = None,
    **kw,
):
    return http.post(
        url + "/v1/images",
        files={"file": (name, data, "application/octet-stream")},
        data={**({} if iso is None else {"iso": str(iso)}), **(form or {})},
        headers={"X-API-Key": key},
        timeout=60,
        **kw,
    )


def wait_status(
    url: str,
    key: str,
    image_id: str,
    want=("done", "failed"),
    timeout: float = 180,
    poll: float = 0.2,
) -> dict:
    """The image's status once it is one of ``want`` (``timeout``: a hang guard, not a
    speed bound); an image that ended otherwise fails at once."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = http.get(f"{url}/v1/images/{image_id}", headers={"X-API-Key": key}).json()
        if st["status"] in want:
            return st
        if st["status"] in ("done", "failed"):
            raise AssertionError(f"image {image_id} ended {st['status']}, not {want}")
        time.sleep(poll)
    raise AssertionError(f"image {image_id} still {st['status']}, not {want}")


def wait_done(url: str, key: str, image_id: str, timeout: float = 180) -> dict:
    return wait_status(url, key, image_id, ("done", "failed"), timeout)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    storage = tmp_path_factory.mktemp("serve") / "storage"
    alice, bob = new_key(storage, "alice"), new_key(storage, "bob")
    srv = Server(storage, "max_upload_mb=2", "quota_images=6", "tile=96", "overlap=32")
    try:
        yield {"url": srv.url, "alice": alice, "bob": bob, "storage": storage, "server": srv}
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def done_image(service):
    url, key = service["url"], service["alice"]
    r = upload(url, key, png(90, 130, seed=3))
    assert r.status_code == 202, r.text
    image_id = r.json()["id"]
    st = wait_done(url, key, image_id)
    assert st["status"] == "done", st
    return image_id


def npz(service, image_id: str, key: str, scale: int = 1) -> dict:
    r = http.get(
        f"{service['url']}/v1/images/{image_id}/maps",
        params={"scale": scale},
        headers={"X-API-Key": key},
    )
    assert r.status_code == 200, r.text
    return dict(np.load(io.BytesIO(r.content)))


# ---- keys -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_keys_are_shown_once_stored_hashed_and_revocable(tmp_path):
    storage = tmp_path / "s"
    key = new_key(storage, "carol")
    assert key.startswith("rt_") and len(key) > 40
    assert key not in (storage / "keys.sqlite").read_bytes().decode("latin-1")  # only a hash
    r = keys(storage, "list")
    assert "carol" in r.stdout and "1 active of 1" in r.stdout
    from residual_train.serve.keys import KeyStore

    ks = KeyStore(storage)
    assert ks.user_of(key) == "carol" and ks.user_of(key + "x") is None
    assert keys(storage, "revoke", "carol").returncode == 0
    assert ks.user_of(key) is None
    r = keys(storage, "revoke", "carol")
    assert r.returncode == 2 and "no active key" in r.stderr
    r = keys(storage, "add", "../evil")
    assert r.returncode == 2 and "user = '../evil'" in r.stderr


# ---- the API --------------------------------------------------------------------------------
def test_upload_status_render_and_maps(service, done_image):
    url, key = service["url"], service["alice"]
    st = http.get(f"{url}/v1/images/{done_image}", headers={"X-API-Key": key}).json()
    assert st["width"] == 130 and st["height"] == 90 and st["iso"] == 1600
    assert st["components"] == ["blur", "noise"] and st["filename"] == "img.png"
    m = npz(service, done_image, key)
    x, rb, rn = m["input"], m["R_blur"], m["R_noise"]
    noise = NoiseModel(m["noise_A"], m["noise_B"])
    assert x.shape == rb.shape == rn.shape == (3, 90, 130) and np.abs(rn).max() > 0
    # the render is the brightness-consistent composition of the stored maps, any region
    r = http.get(
        f"{url}/v1/images/{done_image}/render",
        params={"blur": 0.7, "noise": 0.2, "x": 10, "y": 5, "w": 64, "h": 48, "format": "tiff"},
        headers={"X-API-Key": key},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/tiff"
    got = np.moveaxis(tifffile.imread(io.BytesIO(r.content)), 2, 0)
    maps = {"blur": rb, "noise": rn}
    want = compose_reference(x, maps, {"blur": 0.7, "noise": 0.2}, noise)[:, 5:53, 10:74]
    np.testing.assert_allclose(got, want, atol=1e-6)
    # PNG at scale 2: composition of the 2x2-averaged maps, 8-bit sRGB
    r = http.get(
        f"{url}/v1/images/{done_image}/render",
        params={"blur": 1, "noise": 0, "scale": 2},
        headers={"X-API-Key": key},
    )
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    small = [area_downscale(v, 2) for v in (x, rb, rn)]
    sx, srb, srn = small
    want8 = to_srgb8(
        compose_reference(sx, {"blur": srb, "noise": srn}, {"blur": 1.0, "noise": 0.0}, noise)
    )
    assert img.shape == (45, 65, 3) and np.abs(img.astype(int) - want8).max() <= 1
    # the server reports its own render time (a decimal number of ms; bench/serve.py's figure)
    assert re.fullmatch(r"\d+(\.\d+)?", r.headers["x-render-ms"]), r.headers["x-render-ms"]


def test_renders_never_run_the_network(service, done_image):
    url, key = service["url"], service["alice"]
    before = http.get(f"{url}/v1/images/{done_image}", headers={"X-API-Key": key}).json()
    runs_before = http.get(f"{url}/healthz").json()["network_runs"]
    for a in (0, 0.5, 1):
        r = http.get(
            f"{url}/v1/images/{done_image}/render",
            params={"blur": a, "noise": 1 - a},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 200
    after = http.get(f"{url}/v1/images/{done_image}", headers={"X-API-Key": key}).json()
    assert after["network_seconds"] == before["network_seconds"]  # one network run, at upload
    health = http.get(f"{url}/healthz").json()
    assert health["running"] == 0 and health["network_runs"] == runs_before


@pytest.mark.parametrize(
    "req, code, needle",
    [
        (lambda u, k, i: http.get(f"{u}/v1/images/{i}"), 401, "X-API-Key"),
        (
            lambda u, k, i: http.get(f"{u}/v1/images/{i}", headers={"X-API-Key": "rt_wrong"}),
            401,
            "unknown API key",
        ),
        (
            lambda u, k, i: http.get(
                f"{u}/v1/images/{i}/render", params={"blur": 2.5}, headers={"X-API-Key": k}
            ),
            422,
            "query.blur = 2.5 must be in [-1, 2]",
        ),
        (
            lambda u, k, i: http.get(
                f"{u}/v1/images/{i}/render", params={"noise": -1.5}, headers={"X-API-Key": k}
            ),
            422,
            "query.noise = -1.5 must be in [-1, 2]",
        ),
        (
            lambda u, k, i: http.get(
                f"{u}/v1/images/{i}/render", params={"x": 120, "w": 50}, headers={"X-API-Key": k}
            ),
            422,
            "not inside the 130x90 image",
        ),
        (
            lambda u, k, i: http.get(
                f"{u}/v1/images/{i}/render", params={"format": "gif"}, headers={"X-API-Key": k}
            ),
            422,
            "format = 'gif'",
        ),
        (
            lambda u, k, i: http.get(
                f"{u}/v1/images/{i}/render", params={"blur": "lots"}, headers={"X-API-Key": k}
            ),
            422,
            "query.blur = 'lots' is not a number",
        ),
        (lambda u, k, i: upload(u, k, b"not an image at all"), 422, "cannot be read"),
        (lambda u, k, i: upload(u, k, png(20, 20)[:60]), 422, "cannot be read"),
        (lambda u, k, i: upload(u, k, b"x", name="evil.exe"), 422, "not a supported image"),
        (
            lambda u, k, i: upload(u, k, tiff_f32(np.full((8, 8, 3), 4000.0)), name="x.tif"),
            422,
            "'x.tif': values up to 4000; a capture is linear with 1 = white",
        ),
        (
            lambda u, k, i: upload(u, k, png(8, 8), form={"encoding": "gamma22"}),
            422,
            "encoding = 'gamma22': auto, srgb or linear",
        ),
        (
            lambda u, k, i: upload(u, k, png(40, 40), iso=10),
            422,
            "outside the model's training range",
        ),
    ],
)
def test_errors_are_json_one_liners(service, done_image, req, code, needle):
    r = req(service["url"], service["alice"], done_image)
    assert r.status_code == code, r.text
    assert needle in r.json()["detail"] and "\n" not in r.json()["detail"]


def encoded(fmt: str, seed: int = 4, h: int = 36, w: int = 52) -> tuple[bytes, np.ndarray]:
    """An upload in ``fmt`` and the pixels any decoder reads from it (H, W, 3)."""
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(rng.integers(-9, 10, (h, w, 3)), axis=1) + 128  # JPEG-friendly
    a8 = np.clip(smooth, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    if fmt == "tif16":
        a16 = (rng.random((h, w, 3)) * 65535).astype(np.uint16)
        tifffile.imwrite(buf, a16, photometric="rgb")
        return buf.getvalue(), a16
    Image.fromarray(a8).save(buf, {"png": "PNG", "jpg": "JPEG", "tif8": "TIFF"}[fmt])
    return buf.getvalue(), np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def render_at_zero(service, image_id: str, fmt: str) -> np.ndarray:
    r = http.get(
        f"{service['url']}/v1/images/{image_id}/render",
        params={"blur": 0, "noise": 0, "format": fmt},
        headers={"X-API-Key": service["alice"]},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-color-encoding"] == {"png": "srgb", "tiff": "linear"}[fmt]
    if fmt == "png":
        return np.asarray(Image.open(io.BytesIO(r.content)), np.int32)
    return tifffile.imread(io.BytesIO(r.content))  # float linear light


@pytest.mark.parametrize("fmt, suffix", [("png", ".png"), ("jpg", ".jpg"), ("tif8", ".tif")])
def test_an_srgb_upload_renders_back_unchanged_at_strengths_zero(service, fmt, suffix):
    """An 8-bit file is sRGB: decoded to linear light for the network and the noise model,
    encoded back by the render, so strengths 0 give the upload in every format."""
    from data_gen.sources import linear_to_srgb, srgb_to_linear

    url, key = service["url"], service["alice"]
    data, pixels = encoded(fmt)
    r = upload(url, key, data, name=f"photo{suffix}")
    assert r.status_code == 202, r.text
    image_id = r.json()["id"]
    try:
        st = wait_done(url, key, image_id)
        assert st["status"] == "done" and st["encoding"] == "srgb", st
        want = pixels.astype(np.int32)
        assert np.abs(render_at_zero(service, image_id, "png") - want).max() <= 1
        lin = render_at_zero(service, image_id, "tiff")
        np.testing.assert_allclose(lin, srgb_to_linear(pixels / 255.0), atol=1e-6)
        back = np.round(linear_to_srgb(lin) * 255).astype(np.int32)
        assert np.abs(back - want).max() <= 1
        # the maps the page composes hold the same linear input
        x = npz(service, image_id, key)["input"]
        np.testing.assert_allclose(np.moveaxis(x, 0, 2), lin, atol=1e-7)
    finally:
        http.delete(f"{url}/v1/images/{image_id}", headers={"X-API-Key": key})


def test_a_16_bit_upload_is_linear_unless_the_client_says_srgb(service):
    from data_gen.sources import srgb_to_linear

    url, key = service["url"], service["alice"]
    data, a16 = encoded("tif16")
    ids = []
    try:
        for encoding, want in (
            (None, a16 / 65535.0),
            ("srgb", srgb_to_linear(a16 / 65535.0)),
        ):
            form = {} if encoding is None else {"encoding": encoding}
            r = upload(url, key, data, name="scan.tif", iso=800, form=form)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
            st = wait_done(url, key, ids[-1])
            assert st["encoding"] == ("linear" if encoding is None else "srgb"), st
            np.testing.assert_allclose(render_at_zero(service, ids[-1], "tiff"), want, atol=1e-6)
    finally:
        for i in ids:
            http.delete(f"{url}/v1/images/{i}", headers={"X-API-Key": key})


def test_wrong_channel_count_is_refused(service):
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((32, 32, 5), np.float32))
    r = upload(service["url"], service["alice"], buf.getvalue(), name="five.tif")
    assert r.status_code == 422 and "5 channels, expected 3" in r.json()["detail"]


def test_users_see_only_their_own_images_and_ids_are_not_guessable(service, done_image):
    url = service["url"]
    for path in ("", "/render", "/maps"):
        r = http.get(f"{url}/v1/images/{done_image}{path}", headers={"X-API-Key": service["bob"]})
        assert r.status_code == 404
    r = http.delete(f"{url}/v1/images/{done_image}", headers={"X-API-Key": service["bob"]})
    assert r.status_code == 404
    assert done_image not in {
        m["id"] for m in http.get(f"{url}/v1/images", headers={"X-API-Key": service["bob"]}).json()
    }
    assert len(done_image) == 22  # 128 random bits, URL-safe base64
    ids = {
        json.loads((d / "meta.json").read_text())["id"]
        for d in (service["storage"] / "images").iterdir()
        if d.is_dir()
    }
    assert done_image in ids


def test_path_traversal_is_refused_everywhere(service, done_image):
    url, key = service["url"], service["alice"]
    h = {"X-API-Key": key}
    for bad in (
        "..%2F..%2Fkeys.sqlite",
        "..",
        "%2e%2e",
        "a" * 22 + "%2F..",
        "....................../",
    ):
        r = http.get(f"{url}/v1/images/{bad}", headers=h, follow_redirects=True)
        assert r.status_code == 404, bad
    for path in (
        "/v1/registry/..%2F..%2Fetc/index.json",
        "/v1/registry/default/..%2F..%2F..%2Fsetup.py/card.json",
        "/v1/registry/default/..%2Findex.json/x",
    ):
        assert http.get(url + path, headers=h).status_code == 404
    # a client's file name is only ever a display name
    r = upload(url, key, png(24, 24, seed=9), name="../../../../escaped.png")
    assert r.status_code == 202
    image_id = r.json()["id"]
    assert wait_done(url, key, image_id)["filename"] == "escaped.png"
    assert not list(service["storage"].parent.rglob("escaped.png"))
    http.delete(f"{url}/v1/images/{image_id}", headers=h)


def test_too_large_upload_is_refused_without_being_stored(service):
    url, key = service["url"], service["alice"]
    big = b"\0" * (3 * 2**20)  # the limit is 2 MB
    r = upload(url, key, big, name="big.png")
    assert r.status_code == 413 and "larger than the limit" in r.json()["detail"]

    def chunks():  # no Content-Length: refused while streaming
        yield (
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        for _ in range(48):
            yield b"\0" * 2**16

    r = http.post(
        url + "/v1/images",
        content=chunks(),
        headers={"X-API-Key": key, "Content-Type": "multipart/form-data; boundary=xyz"},
        timeout=60,
    )
    assert r.status_code == 413
    leftovers = [p for p in (service["storage"] / "uploads").rglob("*") if p.is_file()]
    assert not leftovers


def test_delete_and_quota(service):
    url, key = service["url"], service["bob"]
    ids = []
    for i in range(6):
        r = upload(url, key, png(16, 16, seed=i))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    r = upload(url, key, png(16, 16, seed=99))
    assert r.status_code == 429 and "quota of 6 images" in r.json()["detail"]
    for i in ids:
        wait_done(url, key, i)
        assert http.delete(f"{url}/v1/images/{i}", headers={"X-API-Key": key}).status_code == 204
        assert http.get(f"{url}/v1/images/{i}", headers={"X-API-Key": key}).status_code == 404
    assert upload(url, key, png(16, 16)).status_code == 202


def test_openapi_page_documents_the_api(service):
    spec = http.get(service["url"] + "/openapi.json").json()
    for path in (
        "/v1/images",
        "/v1/images/{image_id}",
        "/v1/images/{image_id}/render",
        "/v1/images/{image_id}/maps",
    ):
        assert path in spec["paths"]
    assert http.get(service["url"] + "/docs").status_code == 200


# ---- what the service serves ------------------------------------------------------------------
def export_heads(root: Path, heads: list[str], seed: int | None = None) -> Path:
    """An export of an untrained ``heads`` network (real ONNX graph, real card); with
    ``seed``, heads drawn at random (non-zero residuals) instead of "no correction"."""
    import torch

    from residual_train.models import build_model
    from residual_train.release.export import export

    hp = {"model": {"arch": "unet", "heads": heads, "width": 8, "depth": 2, "blocks": 1}}
    hp["channels"] = 3
    net = build_model(hp["model"], 3)
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in net.out.values():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.02)
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    # the run's dataset config gives the card the default sensor's noise model
    from data_gen.core.cli import compose_config
    from data_gen.core.paths import CONF

    data_cfg = compose_config(
        CONF, "data_gen", ["out_dir=unused", f"components=[{','.join(heads)}]"]
    )
    (root / "data").mkdir()
    (root / "data" / "config.yaml").write_text(yaml.safe_dump(data_cfg))
    (root / "run" / "config.yaml").write_text(yaml.safe_dump({"data": {"dir": str(root / "data")}}))
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"hyper_parameters": hp, "state_dict": state, "global_step": 0}, ckpt)
    export(ckpt, root / "exp")
    return root / "exp"


@pytest.mark.parametrize(
    "heads, needle",
    [
        (["noise", "blur"], "is out of physical order"),
    ],
)
def test_a_model_with_heads_the_service_cannot_compose_is_refused_at_start(tmp_path, heads, needle):
    exp = export_heads(tmp_path, heads)
    storage = tmp_path / "storage"
    r = serve_cli(f"model={exp}", f"storage={storage}", "port=9")
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(err) == 1 and needle in err[0], r.stderr
    assert not storage.exists()  # refused before anything was written


@pytest.mark.slow
def test_a_server_with_self_ensemble_stores_the_averaged_maps(tmp_path):
    """``self_ensemble=true``: each job's maps are the mean over the flips the model was
    trained with, as ``deploy`` computes them; a bad value is refused before any storage."""
    from residual_train.deploy import load_model

    r = serve_cli("self_ensemble=maybe", f"storage={tmp_path / 'bad'}", "port=9")
    assert r.returncode == 2 and "self_ensemble = 'maybe': one of false, trained, true" in r.stderr
    assert not (tmp_path / "bad").exists()
    storage = tmp_path / "s"
    key = new_key(storage, "gil")
    srv = Server(storage, "self_ensemble=true", "tile=64", "overlap=16")
    try:
        image_id = upload(srv.url, key, png(60, 84, seed=4), iso=800).json()["id"]
        assert wait_done(srv.url, key, image_id)["status"] == "done"
        m = npz({"url": srv.url}, image_id, key)
    finally:
        srv.stop()
    assert (
        "views blur identity+flip-y; noise identity+flip-y+rot90" in Path(srv.log.name).read_text()
    )
    want = load_model("default", self_ensemble=True).predict(m["input"], 64, 16, iso=800)
    for h in ("blur", "noise"):
        np.testing.assert_allclose(m[f"R_{h}"], want[h], atol=1e-5)


# ---- queue, crash, restart ------------------------------------------------------------------
@pytest.mark.slow
def test_full_queue_answers_503_with_retry_after(tmp_path):
    storage = tmp_path / "s"
    key = new_key(storage, "dave")
    srv = Server(storage, "queue_size=1", "workers=1", "tile=128", "overlap=32")
    try:
        big = png(900, 1200, seed=1)  # a second or more of network time on a CPU
        rs = [upload(srv.url, key, big) for _ in range(4)]  # 1 running + 1 queued at most
        codes = [r.status_code for r in rs]
        assert codes[0] == 202 and 503 in codes, codes
        busy = next(r for r in rs if r.status_code == 503)
        assert busy.headers["retry-after"] == "30" and "queue is full" in busy.json()["detail"]
        # what was accepted finishes; nothing refused was kept
        accepted = [r.json()["id"] for r in rs if r.status_code == 202]
        assert all(wait_done(srv.url, key, i)["status"] == "done" for i in accepted)
        assert len(list((storage / "images").iterdir())) == len(accepted)
    finally:
        srv.stop()


@pytest.mark.slow
def test_a_job_killed_with_the_server_is_finished_after_the_restart(tmp_path):
    storage = tmp_path / "s"
    key = new_key(storage, "erin")
    srv = Server(storage, "tile=128", "overlap=32")
    r = upload(srv.url, key, png(1000, 1400, seed=2))
    image_id = r.json()["id"]
    wait_status(srv.url, key, image_id, ("running",), poll=0.05)
    srv.stop(signal.SIGKILL)  # mid-job
    meta = json.loads((storage / "images" / image_id / "meta.json").read_text())
    assert (
        meta["status"] == "running" and not (storage / "images" / image_id / "R_noise.npy").exists()
    )
    srv = Server(storage, "tile=128", "overlap=32")
    try:
        st = wait_done(srv.url, key, image_id)
        assert st["status"] == "done"
        r = http.get(
            f"{srv.url}/v1/images/{image_id}/render",
            params={"scale": 4},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 200
        assert not [p for p in (storage / "images" / image_id).iterdir() if ".tmp-" in p.name]
    finally:
        srv.stop()


@pytest.mark.slow
def test_an_upload_cut_by_a_kill_is_failed_with_a_reason_and_cleaned_after_the_restart(
    tmp_path,
):
    """What ``kill -9`` leaves when it lands after the image's record and before its input
    array is complete (the record says queued, a partial temporary array, the private
    copy of the upload, a half-deleted image): the restarted server fails that job with a
    reason and removes every leftover; one server per storage."""
    from residual_train.serve.store import ImageStore

    storage = tmp_path / "s"
    key = new_key(storage, "fay")
    store = ImageStore(storage)
    cut = store.new_id()
    store.create(cut, {"owner": "fay", "status": "queued", "filename": "big.png", "iso": 800.0})
    partial = storage / "images" / cut / ".input.tmp-host-4242-1.npy"
    partial.write_bytes(b"\x93NUMPY" + b"\0" * 100_000)  # cut off mid-write
    copy = storage / "uploads" / "tmpk1ll3d" / "upload.png"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(png(64, 64))
    half_deleted = storage / "images" / f".deleted-{store.new_id()}-0a1b"
    half_deleted.mkdir()
    (half_deleted / "R_noise.npy").write_bytes(b"x" * 1000)
    srv = Server(storage, "tile=128", "overlap=32")
    try:
        st = http.get(f"{srv.url}/v1/images/{cut}", headers={"X-API-Key": key}).json()
        assert st["status"] == "failed" and "upload the image again" in st["error"], st
        assert not partial.exists() and not copy.exists() and not half_deleted.exists()
        assert not list((storage / "uploads").iterdir())
        # the storage is this server's: a second one is refused in one line
        r = serve_cli(f"storage={storage}", f"port={free_port()}")
        assert r.returncode == 2 and "is in use by another server" in r.stderr, r.stderr
        # the user sees why, deletes it, and uploads again
        assert http.delete(f"{srv.url}/v1/images/{cut}", headers={"X-API-Key": key}).is_success
        r = upload(srv.url, key, png(40, 40))
        assert wait_done(srv.url, key, r.json()["id"])["status"] == "done"
    finally:
        srv.stop()


def fill(d: Path) -> Path:
    """Fill the file system of ``d`` (a small tmpfs) to the last byte; returns the filler."""
    filler = d / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="tmpfs: root only")
@pytest.mark.slow
def test_a_full_disk_is_one_line_at_start_and_507_for_an_upload(tmp_path):
    from tests.helpers.cli import one_line_error
    from tests.helpers.fs import tmpfs

    with tmpfs(tmp_path / "small", "4m") as d:
        storage = d / "s"
        key = new_key(storage, "gus")
        filler = fill(d)
        r = serve_cli(f"storage={storage}", f"port={free_port()}")
        one_line_error(r, 1, "No space left on device", "disk is full", str(storage))
        filler.unlink()
        srv = Server(storage, "tile=128", "overlap=32")
        try:
            filler = fill(d)
            r = upload(srv.url, key, png(200, 300, seed=8))
            assert r.status_code == 507 and "disk is full" in r.json()["detail"], r.text
            assert not [p for p in (storage / "images").iterdir()]  # nothing kept
            assert not list((storage / "uploads").iterdir())
            filler.unlink()
            r = upload(srv.url, key, png(200, 300, seed=8))
            assert wait_done(srv.url, key, r.json()["id"])["status"] == "done"
        finally:
            srv.stop()


# ---- devices: fetch a published model over HTTP ------------------------------------------------
def test_device_fetch_from_the_service_and_from_a_static_server(service, tmp_path):
    from residual_train.deploy import SHIPPED, load_model
    from residual_train.release.fetch import fetch
    from residual_train.release.registry import TamperedError

    url = service["url"] + "/v1/registry"
    got = fetch(url, "default", tmp_path / "dev", key=service["alice"])
    model = load_model(tmp_path / "dev")
    assert (
        got["version"]
        == json.loads((SHIPPED / "default" / "index.json").read_text())["aliases"]["latest"]
    )
    assert model.heads == ["blur", "noise"]
    r = subprocess.run(
        [
            PY,
            "-m",
            "residual_train.release.fetch",
            f"url={url}",
            "model=default",
            f"out_dir={tmp_path / 'nokey'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "HTTP 401" in r.stderr
    # any web server holding a registry; a tampered file is refused and nothing is kept
    reg = tmp_path / "reg"
    shutil.copytree(SHIPPED, reg)
    version = got["version"]
    onnx = reg / "default" / version / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: Quiet(*a, directory=str(reg), **k)
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        with pytest.raises(TamperedError, match="model.onnx: sha256 differs from the card"):
            fetch(base, f"default:{version}", tmp_path / "bad")
        assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.tmp-*"))
        shutil.copy2(SHIPPED / "default" / version / "model.onnx", onnx)
        best = json.loads((reg / "default" / "index.json").read_text())["aliases"]["best"]
        got = fetch(base, "default:best", tmp_path / "good")
        assert got["version"] == best
        # digests, not bytes: a failing == on two 10 MB graphs has pytest diff them for minutes
        good, served = tmp_path / "good" / "model.onnx", reg / "default" / best / "model.onnx"
        assert sha256_file(good) == sha256_file(served)
    finally:
        httpd.shutdown()


# ---- the page, in a real headless Chromium ----------------------------------------------------
def page_sliders_follow_the_server(url: str, key: str, tmp_path, components: list[str]):
    """Upload through the page, then move each component's slider: after every move the
    page's picture equals the server's render at those strengths within one 8-bit level;
    every slider at 0 shows the upload back."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    img = tmp_path / "photo.png"
    img.write_bytes(png(120, 180, seed=5))
    driver = chromium_driver()
    try:
        driver.get(url + "/")
        driver.find_element(By.ID, "key").send_keys(key)
        driver.find_element(By.ID, "use-key").click()
        driver.find_element(By.ID, "file").send_keys(str(img))
        driver.find_element(By.ID, "upload").click()
        WebDriverWait(driver, 180).until(
            lambda d: d.execute_script("return window.rt.maps !== null")
        )
        image_id = driver.execute_script("return window.rt.id")
        assert driver.execute_script("return window.rt.maps.header.components") == components

        def canvas(which: str = "after") -> np.ndarray:
            data = driver.execute_script(
                f"const c = document.getElementById('{which}');"
                "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);"
            )
            return np.asarray(data, np.int16).reshape(120, 180, 4)[..., :3]

        def server(strengths: dict) -> np.ndarray:
            r = http.get(
                f"{url}/v1/images/{image_id}/render",
                params=strengths,
                headers={"X-API-Key": key},
            )
            assert r.status_code == 200, r.text
            return np.asarray(Image.open(io.BytesIO(r.content)), np.int16)

        def drag(slider_id: str, fraction: float) -> float:
            s = driver.find_element(By.ID, slider_id)
            n = driver.execute_script("return window.rt.composeCount")
            width = s.size["width"]
            ActionChains(driver).move_to_element_with_offset(
                s, int((fraction - 0.5) * (width - 16)), 0
            ).click().perform()
            WebDriverWait(driver, 10).until(
                lambda d: d.execute_script("return window.rt.composeCount") > n
            )
            WebDriverWait(driver, 10).until(
                lambda d: d.execute_script("return window.rt.lastRepaintMs !== null")
            )
            return float(s.get_attribute("value"))

        # the 8-bit upload is sRGB: the page shows it back unchanged at strengths 0
        uploaded = np.asarray(Image.open(img), np.int16)
        assert np.abs(canvas("before") - uploaded).max() <= 1
        composed_at_start = driver.execute_script("return window.rt.composeCount")
        before = canvas()
        st = dict.fromkeys(components, 1.0)
        assert np.abs(before - server(st)).max() <= 1
        for i, c in enumerate(components):
            st[c] = drag(c, 0.2 + 0.15 * i)
            after = canvas()
            assert 0.05 < st[c] < 0.9 and np.abs(after - before).max() > 3, c  # it changed
            assert np.abs(after - server(st)).max() <= 1, c
            before = after
        for slider in components:  # every one at 0 (the keyboard's Home key)
            n = driver.execute_script("return window.rt.composeCount")
            driver.find_element(By.ID, slider).send_keys(Keys.HOME)
            WebDriverWait(driver, 10).until(
                lambda d, n=n: d.execute_script("return window.rt.composeCount") > n
            )
            assert float(driver.find_element(By.ID, slider).get_attribute("value")) == 0
        assert np.abs(canvas() - uploaded).max() <= 1
        # every slider move composed a new picture (how long it takes is bench/page.py's figure)
        moves = 2 * len(components)
        assert driver.execute_script("return window.rt.composeCount") - composed_at_start >= moves
    finally:
        driver.quit()


@run_if(chromium=True)
def test_page_sliders_follow_the_servers_composition(service, tmp_path):
    page_sliders_follow_the_server(service["url"], service["alice"], tmp_path, ["blur", "noise"])


@run_if(chromium=True)
@pytest.mark.slow
def test_one_slider_per_component_follows_the_servers_chain_rule(tmp_path):
    """A relight + fog + blur + noise model: the page shows four sliders and composes them
    with the server's rule (the gains' slope maps, the blur following them, the noise
    re-scaled) after every move."""
    comps = ["relight", "fog", "blur", "noise"]
    exp = export_heads(tmp_path, comps, seed=1)
    storage = tmp_path / "s"
    key = new_key(storage, "carol")
    srv = Server(storage, f"model={exp}", "tile=96", "overlap=32")
    try:
        page_sliders_follow_the_server(srv.url, key, tmp_path, comps)
    finally:
        srv.stop()


@pytest.mark.slow
def test_a_raw_upload_without_iso_uses_the_models_default(service):
    from tests.conftest import shared

    raw = shared("raw", "RAW_KODAK_DC50.KDC")
    url, key = service["url"], service["alice"]
    r = upload(url, key, raw.read_bytes(), name="camera.KDC", iso=None)
    assert r.status_code == 202, r.text
    st = wait_done(url, key, r.json()["id"], timeout=600)
    assert st["status"] == "done", st
    assert st["iso"] == pytest.approx(800.0)  # sqrt(100 * 6400): the card's middle
    assert st["width"] > st["height"] > 300
    http.delete(f"{url}/v1/images/{st['id']}", headers={"X-API-Key": key})
