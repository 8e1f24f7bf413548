"""Training against the hardware, per device: the step, the loader, on-the-fly rendering.

* **Step**: samples/s of a full training step (forward, loss, backward, fused AdamW) at 64,
  128 and 256 px for the default model (``conf/model/dual_head.yaml``) and the shipped
  one (``conf/experiment/shipped.yaml``: σ-map input, Wiener deconvolution path). CPU:
  float32 and bf16 autocast; GPU: bf16 autocast with channels-last, and with
  ``torch.compile`` for the shipped model. FLOPs per sample come from
  ``torch.utils.flop_counter``; achieved FLOP/s is compared with the device's bf16 peak
  (the vendor's dense figure where known, and a large bf16 matrix product measured in
  the same run). A ``torch.profiler`` table of each case's largest operators says what
  limits it.
* **Loader**: samples/s of the shard loader (HDF5, float16, crop 64 of 80 px) with 0, 2,
  8 and 16 workers.
* **On the fly**: samples/s of the renderer on the device (data.onthefly) at each size,
  and its share of a shipped-model training step (render time / (render + step)).

Prints a table and saves ``bench/results/train-<device>.json``.

    python bench/train.py [--device cpu|cuda] [--quick]
    python bench/train.py --onthefly-only --components relight,fog,blur,noise --sizes 64
    python bench/train.py --onthefly-only --lens measured_63762bb --psf-per block --sizes 64
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save
from bench.datagen import config as datagen_config
from data_gen.core.cli import compose_config
from data_gen.core.paths import CONF
from data_gen.generate import generate
from residual_train.data import ResidualDataModule
from residual_train.training.lit import ResidualModule

# dense bf16 tensor-core peaks (vendor data sheets, SXM parts), FLOP/s
VENDOR_BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def model_configs() -> dict[str, tuple[dict, bool]]:
    """``name -> (model config, sigma_map)`` for the default and the shipped model."""
    out = {}
    for name, overrides in (("default", []), ("shipped", ["experiment=shipped"])):
        cfg = compose_config(CONF, "train", overrides)
        out[name] = (cfg["model"], bool(cfg["data"].get("sigma_map")))
    return out


def make_module(model: dict, sigma_map: bool, device: str, channels_last: bool):
    cfg = {**model, "sigma_map": sigma_map}
    module = ResidualModule(cfg, 3, {"type": "charbonnier"}, {"fused": "auto"}, {}).to(device)
    if model.get("deconv"):
        k = 31
        psf = torch.zeros(3, k, k, dtype=torch.float64)
        psf[:, k // 2, k // 2] = 1.0
        module.net.init_deconv(psf.numpy())
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def synthetic_batch(n: int, px: int, device: str, sigma_map: bool) -> dict:
    """A batch with the keys and value ranges of a real one (step time does not depend on
    the pixel values)."""
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(n, 3, px, px, generator=g)
    noisy = clean + 0.02 * torch.randn(n, 3, px, px, generator=g)
    b = {
        "x": noisy,
        "clean": clean,
        "blur": clean,
        "noise": noisy,
        "R_blur": 0.01 * torch.randn(n, 3, px, px, generator=g),
        "R_noise": clean - noisy,
        "iso": torch.full((n,), 1600.0),
        "a": torch.full((n, 3), 1e-3),
        "b": torch.full((n, 3), 1e-6),
    }
    if sigma_map:
        b["sigma"] = torch.full((n, 3, px, px), 0.02)
    return {k: v.to(device) for k, v in b.items()}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step_fn(module, batch: dict, device: str, bf16: bool):
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=device == "cuda")

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = module.losses(batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(fn, device: str, reps: int, warmup: int = 2) -> float:
    """Seconds per call of ``fn`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / reps


def flops_per_sample(module, batch: dict, device: str, bf16: bool) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    one = {k: v[:1] for k, v in batch.items()}
    # FFTs are not counted: count the deconvolution path as the convolution it computes
    fft, module.net.deconv_fft = getattr(module.net, "deconv_fft", False), False
    with FlopCounterMode(display=False) as fc:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = module.losses(one)["total"]
        loss.backward()
    module.net.deconv_fft = fft
    module.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def profile_top(fn, device: str, top: int = 6) -> list[dict]:
    """The operators taking the most self time over 3 steps (device time on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(3):
            fn()
        sync(device)
    attr = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    total = sum(getattr(e, attr) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    return [
        {"op": e.key, "share": round(getattr(e, attr) / total, 3), "calls": e.count}
        for e in events[:top]
    ]


def matmul_peak(device: str) -> float:
    """Measured bf16 matrix-product FLOP/s on ``device`` (the attainable peak)."""
    n = 8192 if device == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    s = timed(lambda: a @ b, device, reps=10 if device == "cuda" else 3)
    return 2 * n**3 / s


def vendor_peak(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in VENDOR_BF16_PEAK.items() if k in name), None)


def batch_for(px: int, device: str) -> int:
    """Batch size: 16 at 64 px on a CPU (the shipped recipe), the same pixels per batch at
    other sizes; 16x that on a GPU (where small batches only measure launch overhead)."""
    n = max(1, 16 * 64 * 64 // (px * px))
    return n * 16 if device == "cuda" else n


def step_cases(
    device: str,
    sizes: list[int],
    quick: bool,
    peak: float,
    models: list[str],
    compile_too: bool = True,
    compare_deconv: bool = False,
) -> tuple[dict, dict]:
    rows, profiles = {}, {}
    bf16_native = device == "cuda" or _cpu_bf16()
    variants = (
        [("bf16_cl", True, True, False)]
        + ([("bf16_cl_compile", True, True, True)] if compile_too else [])
        if device == "cuda"
        else [("fp32", False, False, False)]
        + ([("bf16", True, False, False)] if bf16_native else [])
    )
    if compare_deconv:  # the deconvolution path as a grouped convolution in training too
        v = variants[-1]
        variants = [*variants, (f"{v[0]}_convdeconv", *v[1:])]
    for name, (model, sigma_map) in model_configs().items():
        if name not in models:
            continue
        for px in sizes:
            n = batch_for(px, device)
            for variant, bf16, cl, compile_ in variants:
                if compile_ and (name != "shipped" or quick):
                    continue
                mcfg = model
                if variant.endswith("_convdeconv"):
                    if not model.get("deconv"):
                        continue
                    mcfg = {**model, "deconv_impl": "conv"}
                module = make_module(mcfg, sigma_map, device, cl)
                batch = synthetic_batch(n, px, device, sigma_map)
                if cl:
                    batch = {
                        k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                        for k, v in batch.items()
                    }
                flops = flops_per_sample(module, batch, device, bf16)
                if compile_:
                    module.net.compile()
                step = step_fn(module, batch, device, bf16)
                reps = (3 if px >= 256 else 5) if device == "cpu" else 20
                warm = 3 if compile_ else 2
                s = timed(step, device, reps, warm)
                key = f"{name}_{px}px_{variant}"
                rows[key] = {
                    "batch": n,
                    "samples_per_s": n / s,
                    "step_ms": 1e3 * s,
                    "gflop_per_sample": flops / 1e9,
                    "tflop_per_s": flops * n / s / 1e12,
                    "of_measured_matmul_peak": flops * n / s / peak,
                }
                if px == max(sizes) or device == "cuda":
                    profiles[key] = profile_top(step, device)
                print(
                    f"{key:36s} batch {n:4d}  {n / s:9.1f} samples/s  "
                    f"{flops * n / s / 1e12:7.2f} TFLOP/s ({flops * n / s / peak:.1%} of matmul)",
                    flush=True,
                )
    return rows, profiles


def _cpu_bf16() -> bool:
    from residual_train.training.train import cpu_has_bf16

    return cpu_has_bf16()


def loader_rate(data_dir: Path, workers: int, batch: int, batches: int) -> float:
    dm = ResidualDataModule(
        str(data_dir), crop=64, batch_size=batch, num_workers=workers, val_shards=0, verify="size"
    )
    it = iter(dm.train_dataloader())
    next(it)  # worker start-up is not throughput
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += next(it)["x"].shape[0]
    return n / (time.perf_counter() - t)


def onthefly_rates(
    data_dir: Path, device: str, sizes: list[int], step_rows: dict, generator: dict | None = None
) -> dict:
    out = {}
    for px in sizes:
        n = batch_for(px, device)
        dm = ResidualDataModule(
            str(data_dir),
            crop=px,
            batch_size=n,
            val_shards="all",
            verify="size",
            onthefly={
                "enabled": True,
                "pool": 16,
                "threads": max(1, (os.cpu_count() or 2) // 2),
                "generator": {"patch_size": px, **(generator or {})},
            },
        )
        dev = torch.device(device)
        k = iter(range(10**6))
        s = timed(
            lambda dm=dm, dev=dev, k=k: dm.render_batch(next(k), dev),
            device,
            8 if device == "cuda" else 3,
        )
        step = step_rows.get(
            f"shipped_{px}px_bf16_cl_compile", step_rows.get(f"shipped_{px}px_bf16_cl")
        ) or step_rows.get(f"shipped_{px}px_bf16", step_rows.get(f"shipped_{px}px_fp32"))
        row = {"batch": n, "samples_per_s": n / s, "render_ms": 1e3 * s}
        if step:
            row["share_of_shipped_step"] = s / (s + step["step_ms"] / 1e3)
        out[f"onthefly_{px}px"] = row
        print(
            f"onthefly_{px}px  batch {n:4d}  {n / s:9.1f} samples/s"
            + (f"  {row['share_of_shipped_step']:.1%} of a shipped step" if step else ""),
            flush=True,
        )
        dm.teardown("fit")
    return out


def onthefly_only(
    device: str,
    components: str | None,
    sizes: list[int] | None,
    lens: str | None = None,
    psf_per: str = "patch",
) -> None:
    """The on-the-fly rows against the shipped step of an earlier full run (or of this run,
    measured at the first size, when there is none); ``components``: render that chain
    (e.g. ``relight,fog,blur,noise``, with dead-leaves depth) instead of blur + noise;
    ``lens``: that lens (e.g. ``measured_63762bb``) rendered with ``psf_per`` (``patch``:
    one bank PSF per patch; ``block``: one per 8-px block, as frames are)."""
    import json

    from bench.common import RESULTS

    sizes = sizes or [64, 128, 256]
    path = RESULTS / f"train-{device}.json"
    saved = json.loads(path.read_text()) if path.is_file() else {"step": {}}
    if not any(k.startswith(f"shipped_{sizes[0]}px") for k in saved["step"]):
        steps, _ = step_cases(device, sizes[:1], True, matmul_peak(device), ["shipped"], False)
        saved["step"].update(steps)
    extra = ["patch_size=80"]
    key, tag = "onthefly", ""
    if components:
        extra += [f"components=[{components}]", "+source.depth=[1,20]"]
        key, tag = f"onthefly_{components.replace(',', '_')}", "-components"
    if lens:
        extra += [f"lens={lens}"]
        key, tag = f"{key}_{lens}_psf_per_{psf_per}", f"{tag}-field"
        field = RESULTS / f"train-{device}{tag}.json"  # keeps the other psf_per's rows
        if field.is_file():
            saved = {**json.loads(field.read_text()), "step": saved["step"]}
    root = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        data = root / "ds"
        generate(datagen_config(str(data), 256, 1, True, extra))
        gen = {"psf_per": psf_per} if lens else None
        saved[key] = onthefly_rates(data, device, sizes, saved["step"], gen)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"saved {save(f'train-{device}{tag}', saved)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="64 and 128 px, fewer loader cases")
    ap.add_argument(
        "--onthefly-only",
        action="store_true",
        help="only the on-the-fly rows, against the steps saved by an earlier full run",
    )
    ap.add_argument("--models", default="default,shipped")
    ap.add_argument("--sizes", default=None, help="e.g. 64,256 (default 64,128,256)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-loader", action="store_true", help="skip the shard-loader rows")
    ap.add_argument(
        "--compare-deconv",
        action="store_true",
        help="also train the shipped model's deconvolution path as a convolution",
    )
    ap.add_argument("--tag", default="", help="suffix of the saved JSON's name")
    ap.add_argument(
        "--components",
        default=None,
        help="with --onthefly-only: render this component list, e.g. relight,fog,blur,noise",
    )
    ap.add_argument("--lens", default=None, help="with --onthefly-only: render this lens")
    ap.add_argument("--psf-per", default="patch", choices=("patch", "block"))
    args = ap.parse_args()
    if args.onthefly_only:
        sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else None
        return onthefly_only(args.device, args.components, sizes, args.lens, args.psf_per)
    device = args.device
    sizes = [64, 128] if args.quick else [64, 128, 256]
    if args.sizes:
        sizes = [int(v) for v in args.sizes.split(",")]
    peak = matmul_peak(device)
    vendor = vendor_peak(device)
    print(
        f"device {device} ({torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU'}): "
        f"bf16 matmul {peak / 1e12:.1f} TFLOP/s measured"
        + (f", {vendor / 1e12:.0f} vendor peak" if vendor else ""),
        flush=True,
    )
    steps, profiles = step_cases(
        device,
        sizes,
        args.quick,
        peak,
        args.models.split(","),
        not args.no_compile,
        args.compare_deconv,
    )
    root = Path(tempfile.mkdtemp(prefix="bench_train_"))
    loader: dict[str, float] = {}
    try:
        data = root / "ds"
        samples = 256 if args.no_loader else 4096
        generate(datagen_config(str(data), samples, 2, True, ["patch_size=80"]))
        workers = () if args.no_loader else (0, 2) if args.quick else (0, 2, 8, 16)
        for w in workers:
            loader[f"loader_{w}w"] = loader_rate(data, w, 16, 48 if w < 8 else 4 * w)
            print(f"loader_{w}w  {loader[f'loader_{w}w']:9.1f} samples/s", flush=True)
        onthefly = onthefly_rates(data, device, sizes, steps)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    shipped64 = max(
        (v["samples_per_s"] for k, v in steps.items() if k.startswith("shipped_64px")), default=0
    )
    result = {
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "bf16_matmul_tflops_measured": peak / 1e12,
        "bf16_vendor_peak_tflops": vendor / 1e12 if vendor else None,
        "step": steps,
        "profile_top_ops": profiles,
        "loader_samples_per_s": loader,
        "loader_over_shipped_64px_step": {k: v / shipped64 for k, v in loader.items()}
        if shipped64
        else {},
        "onthefly": onthefly,
    }
    print(f"saved {save(f'train-{device}{args.tag}', result)}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
