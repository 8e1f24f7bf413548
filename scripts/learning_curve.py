"""The learning curve of a training run: RUN_DIR/learning_curve.csv (+ .png) from the run's
CSV log (logs/metrics.csv, continued across resumes).

One row per validation: step, epoch, learning rate, the mean training loss since the
previous validation, and every val/* metric (val/psnr_full and its ISO bins, per head).
The best row by val/psnr_full is marked (the checkpoint the run keeps as best-*.ckpt).

    python scripts/learning_curve.py runs/long/train
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path


def _num(v: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def learning_curve(run_dir: str | Path) -> list[dict]:
    run_dir = Path(run_dir)
    log = run_dir / "logs" / "metrics.csv"
    if not log.is_file():
        raise SystemExit(f"error: {log} does not exist (not a training run directory?)")
    rows = list(csv.DictReader(log.open()))
    val_keys = sorted({k for r in rows for k, v in r.items() if k.startswith("val/") and v})
    out, losses, lr = [], [], math.nan
    for r in rows:
        if r.get("train/loss"):
            losses.append(_num(r["train/loss"]))
        if r.get("lr"):
            lr = _num(r["lr"])
        if r.get("val/psnr_full"):
            row = {
                "step": int(_num(r["step"])) + 1,
                "epoch": int(_num(r["epoch"])),
                "lr": lr,
                "train_loss": sum(losses) / len(losses) if losses else math.nan,
                **{k: _num(r.get(k)) for k in val_keys},
            }
            out.append(row)
            losses = []
    if out:
        best = max(range(len(out)), key=lambda i: out[i]["val/psnr_full"])
        for i, row in enumerate(out):
            row["best"] = int(i == best)
    return out


def write(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    rows = learning_curve(run_dir)
    path = run_dir / "learning_curve.csv"
    if not rows:
        raise SystemExit(f"error: {run_dir} has logged no validation yet")
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([r["step"] for r in rows], [r["val/psnr_full"] for r in rows], "o-")
    ax.set(xlabel="step", ylabel="val/psnr_full (dB)", title=f"learning curve: {run_dir}")
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=90)
    plt.close(fig)
    best = next(r for r in rows if r["best"])
    print(
        f"{path}: {len(rows)} validations, last step {rows[-1]['step']} "
        f"({rows[-1]['val/psnr_full']:.3f} dB), best step {best['step']} "
        f"({best['val/psnr_full']:.3f} dB)"
    )
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/learning_curve.py RUN_DIR")
    write(sys.argv[1])
