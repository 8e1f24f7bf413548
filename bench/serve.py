"""The correction service under load, on loopback only; bounded in time, stops by itself.

Starts ``python -m residual_train.serve`` (the shipped model) in a fresh storage, uploads
one large image (24 MP by default) and waits for its maps, then runs K client threads for
T seconds that mix uploads of a 12 MP image with renders of random 2 MP regions of the
large one at random strengths. Reports uploads/s, renders/s, render latency p50 / p99 (at
the client, and the server's own compose + encode time), the server's peak memory, and
checks that every upload ended done or refused / failed with a reason, and that renders
never ran the network. Target: render of a 2 MP region p50 < 100 ms (CPU).
Saves ``bench/results/serve.json``.

    python bench/serve.py [--clients 4] [--seconds 60] [--big-mp 24] [--upload-mp 12]
"""

from __future__ import annotations

import argparse
import io
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save

ROOT = Path(__file__).resolve().parents[1]


def photo(mp: float, seed: int) -> bytes:
    """An 8-bit TIFF of about ``mp`` megapixels made from a real photograph (astronaut,
    scaled and flipped so it is not one flat colour)."""
    import skimage.data
    import tifffile
    from PIL import Image

    w = int(np.sqrt(mp * 1e6 * 1.5))
    h = int(w / 1.5)
    img = Image.fromarray(skimage.data.astronaut()).resize((w, h), Image.Resampling.BILINEAR)
    a = np.asarray(img)
    if seed % 2:
        a = a[:, ::-1]
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(a), photometric="rgb")
    return buf.getvalue()


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--big-mp", type=float, default=24.0)
    ap.add_argument("--upload-mp", type=float, default=12.0)
    ap.add_argument("--region-mp", type=float, default=2.0)
    ap.add_argument("--upload-share", type=float, default=0.05, help="of client requests")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rt-bench-serve-"))
    storage = tmp / "storage"
    py = sys.executable
    key = (
        subprocess.run(
            [py, "-m", "residual_train.serve", "keys", "add", "bench", f"storage={storage}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen(
        [
            py,
            "-m",
            "residual_train.serve",
            f"port={port}",
            f"storage={storage}",
            "max_upload_mb=1000",
            "queue_size=2",
            "quota_images=1000",
            "log_level=warning",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    h = {"X-API-Key": key}
    client = httpx.Client(timeout=600)
    try:
        for _ in range(600):
            try:
                if client.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        big = photo(args.big_mp, 0)
        t = time.perf_counter()
        r = client.post(
            url + "/v1/images", files={"file": ("big.tif", big)}, data={"iso": "1600"}, headers=h
        )
        r.raise_for_status()
        big_id = r.json()["id"]
        while (st := client.get(f"{url}/v1/images/{big_id}", headers=h).json())["status"] not in (
            "done",
            "failed",
        ):
            time.sleep(0.5)
        assert st["status"] == "done", st
        network_s = time.perf_counter() - t
        runs_before = client.get(url + "/healthz").json()["network_runs"]
        W, H = st["width"], st["height"]
        side = int(np.sqrt(args.region_mp * 1e6 * 1.5))
        rw, rh = min(W, side), min(H, int(side / 1.5))
        small = photo(args.upload_mp, 1)

        lock = threading.Lock()
        renders, server_ms, uploads = [], [], []
        stop = time.perf_counter() + args.seconds

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            c = httpx.Client(timeout=600)
            while time.perf_counter() < stop:
                if rng.random() < args.upload_share:
                    r = c.post(
                        url + "/v1/images",
                        files={"file": ("up.tif", small)},
                        data={"iso": "800"},
                        headers=h,
                    )
                    with lock:
                        uploads.append((r.status_code, r.json()))
                    continue
                x0, y0 = rng.randrange(0, W - rw + 1), rng.randrange(0, H - rh + 1)
                q = {
                    "blur": round(rng.random(), 2),
                    "noise": round(rng.random(), 2),
                    "x": x0,
                    "y": y0,
                    "w": rw,
                    "h": rh,
                }
                t0 = time.perf_counter()
                r = c.get(f"{url}/v1/images/{big_id}/render", params=q, headers=h)
                dt = (time.perf_counter() - t0) * 1e3
                assert r.status_code == 200, r.text
                with lock:
                    renders.append(dt)
                    server_ms.append(float(r.headers["x-render-ms"]))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        t_load = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        load_s = time.perf_counter() - t_load
        # every accepted upload must end done or failed-with-reason (bounded wait)
        accepted = [b["id"] for code, b in uploads if code == 202]
        refused = [b.get("detail") for code, b in uploads if code != 202]
        deadline = time.perf_counter() + 900
        final = {}
        for i in accepted:
            while time.perf_counter() < deadline:
                st = client.get(f"{url}/v1/images/{i}", headers=h).json()
                if st["status"] in ("done", "failed"):
                    final[i] = st
                    break
                time.sleep(1)
        runs_after = client.get(url + "/healthz").json()["network_runs"]
        peak_mb = None
        for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak_mb = int(line.split()[1]) / 1024
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    p50, p99 = (float(np.percentile(renders, q)) for q in (50, 99))
    lost = [
        i
        for i in accepted
        if i not in final or (final[i]["status"] == "failed" and not final[i].get("error"))
    ]
    results = {
        "renders_per_s": len(renders) / load_s,
        "render_p50_ms": p50,
        "render_p99_ms": p99,
        "render_server_p50_ms": float(np.percentile(server_ms, 50)),
        "uploads_accepted": len(accepted),
        "uploads_refused": len(refused),
        "uploads_done": sum(1 for v in final.values() if v["status"] == "done"),
        "uploads_per_s_accepted": len(accepted) / load_s,
        "renders_during_load": len(renders),
        "big_image_network_s": network_s,
        "server_peak_rss_mb": peak_mb,
    }
    checks = {
        "render_2mp_p50_under_100ms": p50 < 100,
        "every_upload_ended_with_a_result_or_reason": not lost and all(refused),
        # the network ran once per accepted upload, never for one of the renders
        "renders_never_ran_the_network": runs_after - runs_before == len(accepted),
    }
    for k, v in {**results, **checks}.items():
        print(f"{k:45s} {v}")
    print(
        "saved",
        save(
            "serve",
            {
                "clients": args.clients,
                "seconds": args.seconds,
                "big_image": f"{W}x{H}",
                "region": f"{rw}x{rh}",
                "upload_mp": args.upload_mp,
                "results": results,
                "targets_met": checks,
                "refusals": sorted(set(refused)),
            },
        ),
    )


if __name__ == "__main__":
    main()
