"""Training throughput: samples/s of the default dual-head model (CPU; GPU when present)
and of the data loader with 0 and 2 workers. The loader must be >= 10x faster than a
training step so that it never starves the model. Saves ``bench/results/train.json``.

    python bench/train.py [--steps 6] [--batch 16]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save
from bench.datagen import config as datagen_config
from data_gen.generate import generate
from residual_train.data import ResidualDataModule
from residual_train.training.lit import ResidualModule

DEFAULT_MODEL = {"arch": "unet", "heads": ["blur", "noise"], "width": 32, "depth": 3, "blocks": 2}


def make_dataset(root: Path) -> Path:
    d = root / "ds"
    cfg = datagen_config(str(d), 512, 2, True, ["patch_size=128", "storage.dtype=float32"])
    generate(cfg)
    return d


def train_rate(
    module: ResidualModule,
    batch: dict,
    steps: int,
    device: str,
    bf16: bool = False,
    channels_last: bool = False,
) -> float:
    module = module.to(device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
    if channels_last:
        batch = {
            k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
            for k, v in batch.items()
        }
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = module.losses(batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch["x"].shape[0] / (time.perf_counter() - t)


def loader_rate(data_dir: Path, crop: int, workers: int, batch: int, batches: int) -> float:
    dm = ResidualDataModule(
        str(data_dir), crop=crop, batch_size=batch, num_workers=workers, val_shards=0, verify="size"
    )
    it = iter(dm.train_dataloader())
    next(it)  # worker start-up is not throughput
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += next(it)["x"].shape[0]
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_train_"))
    rows: dict[str, float] = {}
    try:
        data = make_dataset(root)
        for crop in (64, 128):
            dm = ResidualDataModule(
                str(data), crop=crop, batch_size=args.batch, val_shards=0, verify="size"
            )
            batch = next(iter(dm.train_dataloader()))
            module = ResidualModule(DEFAULT_MODEL, 3, {"type": "charbonnier"}, {}, {})
            rows[f"train_cpu_{crop}px"] = train_rate(module, batch, args.steps, "cpu")
            if torch.cuda.is_available():
                rows[f"train_gpu_fp32_{crop}px"] = train_rate(module, batch, 20, "cuda")
                rows[f"train_gpu_bf16_cl_{crop}px"] = train_rate(
                    module, batch, 20, "cuda", True, True
                )
            for w in (0, 2):
                rows[f"loader_{w}w_{crop}px"] = loader_rate(data, crop, w, args.batch, 24)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratios = {
        f"loader_2w_over_train_{c}px": rows[f"loader_2w_{c}px"] / rows[f"train_cpu_{c}px"]
        for c in (64, 128)
    }
    print(f"{'case':30s} {'samples/s':>10s}")
    for k, v in {**rows, **ratios}.items():
        print(f"{k:30s} {v:10.1f}")
    ok = min(ratios.values()) >= 10
    print(
        f"loader >= 10x training step: {'yes' if ok else 'NO'}; "
        f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none here'}"
    )
    out = save(
        "train",
        {
            "model": DEFAULT_MODEL,
            "batch": args.batch,
            "results": rows,
            "ratios": ratios,
            "loader_10x_faster": ok,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
