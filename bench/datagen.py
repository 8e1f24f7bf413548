"""Generator throughput: quadruples/s for 64x64 RGB patches with a 31x31 PSF.

Cases (default config otherwise: dead-leaves frames of 512 px, 128 patches each):
float16 HDF5 shards written with 1 and 2 worker processes; the same pipeline
rendering only (``write=false``); 2 workers with 512 patches per frame; and parts
alone (dead-leaves frames, batched FFT convolution). Then the lens and sensor
models against the fixed-PSF figure: a field-varying bank (``lens=sharp_prime``,
4 states x 8 heights x 12 azimuths, 31x31; the number of distinct PSFs the shards
use is counted) and Bayer output (``layout=rggb``), each with 1 and 2 processes;
target: >= 80 % of the fixed-PSF rate. The torch renderer (``renderer=torch``) on the CPU
with 1 and 2 processes, numpy and torch at 256 px, and on the GPU when there is one
(``--gpu-only``: just those; 64 and 256 px, host or device normals, 1 and many
processes, rendered and written). Prints a table and saves
``bench/results/datagen.json`` (``datagen-gpu.json``).

``--components``: the cost of more components (schema v2) against [blur, noise], saved as
``bench/results/datagen-components.json``.

    python bench/datagen.py [--samples 16384] [--target 2500] [--quick] [--gpu-only]
    python bench/datagen.py --components --samples 1024
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save
from data_gen.generate import build_pipeline, generate
from data_gen.sources import dead_leaves


def config(
    out_dir: str, samples: int, workers: int, write: bool, extra: list[str], shards: int = 4
) -> dict:
    from data_gen.core.cli import compose_config
    from data_gen.core.paths import CONF

    overrides = [
        f"out_dir={out_dir}",
        f"shards={shards}",
        f"samples_per_shard={samples // shards}",
        "patch_size=64",
        *([] if any(e.startswith("lens=") for e in extra) else ["lens.size=31"]),
        "storage.dtype=float16",
        f"workers={workers}",
        f"write={str(write).lower()}",
        "progress=false",
        *extra,
    ]
    return compose_config(CONF, "data_gen", overrides)


def pipeline_rate(
    samples: int,
    workers: int,
    write: bool,
    extra: list[str],
    psfs_used: list | None = None,
    shards: int = 4,
) -> float:
    """Quadruples/s of one generation; ``psfs_used`` gets the distinct PSF indices."""
    import h5py

    d = tempfile.mkdtemp(prefix="bench_datagen_")
    try:
        s = generate(config(str(Path(d) / "ds"), samples, workers, write, extra, shards))
        if psfs_used is not None and write:
            for f in sorted((Path(d) / "ds").glob("shard-*.h5")):
                with h5py.File(f, "r") as h:
                    psfs_used.extend(np.unique(h["meta"]["psf_index"]).tolist())
        return s["quadruples_per_s"]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def fft_only_rate(batch: int = 256, reps: int = 8) -> float:
    """Patches/s of the lens blur alone: the batched FFT convolution of 94-px windows."""
    from data_gen.backend import NumpyBackend
    from data_gen.components import BatchContext

    pipe = build_pipeline(config("/tmp/unused", 256, 1, False, []))
    blur, backend = pipe.chain["blur"], NumpyBackend()
    w = 64 + pipe.bank.size - 1
    x = np.random.default_rng(0).random((batch, 3, w, w), dtype=np.float32)
    ctx = BatchContext((w, w), None, np.zeros(batch, int), pipe.bank.psfs)
    prepared = blur.prepare_batch([{}] * batch, ctx, backend)
    blur.apply_batch(x, prepared, backend)
    t = time.perf_counter()
    for _ in range(reps):
        blur.apply_batch(x, prepared, backend)
    return batch * reps / (time.perf_counter() - t)


def dead_leaves_rate(reps: int = 5) -> float:
    cfg = config("/tmp/unused", 256, 1, False, [])["source"]
    t = time.perf_counter()
    for i in range(reps):
        dead_leaves(np.random.default_rng(i), cfg["size"], 3, cfg["supersample"])
    return reps / (time.perf_counter() - t)


def gpu_rows(samples: int) -> dict[str, float]:
    """The torch renderer on the GPU: one and several processes (a process draws each
    sample's crop, exposure, ISO and PSF and makes the originals on its CPU core; the
    GPU does the FFTs, the noise and the clipping), normals drawn on the host (the
    reference's) or on the device, at 64 and 256 px, rendered only and written."""
    out = {}
    workers = min(14, max(1, (os.cpu_count() or 2) - 2))
    for normals in ("host", "device"):
        extra = ["renderer=torch", "device=cuda", f"normals={normals}"]
        pipeline_rate(4096, 1, False, extra)  # warm-up (cuFFT plans, kernels)
        for w in (1, workers):
            for px, n in ((64, samples), (256, samples // 16)):
                n = n if w > 1 else n // 8  # one process: a few seconds
                for write in (False, True):
                    if write and (w == 1 or normals == "host"):
                        continue
                    kind = "write" if write else "render_only"
                    key = f"torch_cuda_{px}px_{normals}_normals_{kind}_w{w}"
                    ex = [*extra, f"patch_size={px}"]
                    out[key] = pipeline_rate(n, w, write, ex, shards=max(4, 2 * w))
                    print(f"{key:48s} {out[key]:10.0f}", flush=True)
    return out


COMPONENT_CASES = {  # name -> components ([blur, noise]: schema v1, the batched renderer)
    "blur,noise": ("blur", "noise"),
    "blur,motion,noise": ("blur", "motion", "noise"),
    "relight,fog,blur,noise": ("relight", "fog", "blur", "noise"),
    "all six": ("relight", "fog", "defocus", "blur", "motion", "noise"),
}


def component_rows(samples: int) -> dict:
    """Samples/s of the component lists (the batched chain: N + 1 renders of each sample,
    prefixes shared: ``before_<c>`` are the chain's prefixes, each ``without_<c>`` continues
    one), written, with 1 and 2 processes; and how many patch arrays each sample stores."""
    from data_gen.chain import stored_names

    out = {}
    for name, comps in COMPONENT_CASES.items():
        extra = [f"components=[{','.join(comps)}]"]
        if {"fog", "defocus"} & set(comps):
            extra.append("+source.depth=[1,20]")
        pipeline_rate(min(256, samples), 1, True, extra)  # warm-up
        rates = {w: pipeline_rate(samples, w, True, extra) for w in (1, 2)}
        arrays = len(stored_names(comps))
        out[name] = {
            "samples_per_s_w1": rates[1],
            "samples_per_s_w2": rates[2],
            "arrays_per_sample": arrays,
        }
        print(
            f"{name:28s} {rates[1]:8.0f} samples/s (1 process) {rates[2]:8.0f} (2)  "
            f"{arrays:2d} arrays/sample",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--target", type=float, default=2500.0)
    ap.add_argument("--quick", action="store_true", help="only the lens / Bayer comparison")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU cases")
    ap.add_argument(
        "--components", action="store_true", help="only the component lists (schema v2)"
    )
    ap.add_argument("--gpu-samples", type=int, default=262144, help="samples per GPU case at 64 px")
    args = ap.parse_args()
    rows = {}
    if args.components:
        rows = component_rows(args.samples)
        unit = "samples/s (64x64 RGB, 31x31 lens PSF, float16 storage, written; 1 and 2 processes)"
        print(f"saved {save('datagen-components', {'results': rows, 'unit': unit})}")
        return
    if args.gpu_only:
        rows = gpu_rows(args.gpu_samples)
        print(f"saved {save('datagen-gpu', {'results': rows, 'unit': 'quadruples/s'})}")
        return
    pipeline_rate(1024, 1, True, [])  # warm-up: numba caches, imports, page cache
    for workers in (1, 2):
        rows[f"write_w{workers}"] = pipeline_rate(args.samples, workers, True, [])
        if not args.quick:
            rows[f"render_only_w{workers}"] = pipeline_rate(args.samples, workers, False, [])
    # the torch renderer (same physics and draws) on the CPU, at 64 and 256 px
    import torch

    torch_cpu = ["renderer=torch", "device=cpu"]
    pipeline_rate(1024, 1, False, torch_cpu)  # warm-up
    for workers in (1, 2):
        rows[f"torch_cpu_write_w{workers}"] = pipeline_rate(args.samples, workers, True, torch_cpu)
        rows[f"torch_cpu_render_only_w{workers}"] = pipeline_rate(
            args.samples, workers, False, torch_cpu
        )
    if not args.quick:  # 256 px: 16x the pixels, 1/8 of the samples
        for name, extra in (("numpy", []), ("torch_cpu", torch_cpu)):
            for write in (True, False):
                kind = "write" if write else "render_only"
                rows[f"{name}_256px_{kind}_w2"] = pipeline_rate(
                    args.samples // 8, 2, write, [*extra, "patch_size=256"]
                )
    if torch.cuda.is_available():
        rows.update(gpu_rows(args.gpu_samples))
    if not args.quick:
        # the same with each dead-leaves frame amortised over 4x more patches
        rows["write_w2_512_patches_per_frame"] = pipeline_rate(
            args.samples, 2, True, ["patches_per_source=512"]
        )
        rows["fft_blur_only_1proc"] = fft_only_rate()
        rows["dead_leaves_frames_per_s_1proc"] = dead_leaves_rate()
    # lens and sensor models vs the fixed PSF (the bank is cached before timing)
    field = ["lens=sharp_prime", "lens.size=31"]
    build_pipeline(config("/tmp/unused", 256, 1, False, field))
    used: list[int] = []
    model_rows = {}
    for workers in (1, 2):
        fixed = rows[f"write_w{workers}"]
        for name, extra in (
            ("field_bank", field),
            ("bayer_rggb", ["layout=rggb"]),
            ("field_bank_bayer", [*field, "layout=rggb"]),
        ):
            r = pipeline_rate(args.samples, workers, True, extra, used if workers == 1 else None)
            rows[f"{name}_w{workers}"] = r
            model_rows[f"{name}_w{workers}"] = {"per_s": r, "vs_fixed_psf": r / fixed}
    print(f"{'case':34s} {'per s':>10s}")
    for k, v in rows.items():
        print(f"{k:34s} {v:10.0f}")
    best = max(rows["write_w1"], rows["write_w2"])  # default config
    distinct = len(set(used))
    worst = min(v["vs_fixed_psf"] for v in model_rows.values())
    print(f"field bank: {distinct} distinct PSFs used; slowest model case at {worst:.0%} of fixed")
    result = {
        "unit": "quadruples/s (64x64 RGB, 31x31 PSF, float16 storage)",
        "lens_and_bayer": model_rows,
        "field_bank_distinct_psfs_used": distinct,
        "lens_and_bayer_target_vs_fixed": 0.8,
        "lens_and_bayer_meet_target": worst >= 0.8 and distinct >= 64,
        "samples_per_case": args.samples,
        "results": rows,
        "target_written_per_s": args.target,
        "best_written_per_s": best,
        "meets_target": best >= args.target,
    }
    print(
        f"best written: {best:.0f}/s (target {args.target:.0f}/s) -> "
        f"{'meets' if best >= args.target else 'BELOW'} target"
    )
    print(f"saved {save('datagen', result)}")


if __name__ == "__main__":
    main()
