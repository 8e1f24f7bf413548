"""Run every benchmark in bench/ and write one JSON and one Markdown summary.

python bench/run_all.py        # -> bench/results/summary.json, bench/results/summary.md
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import RESULTS, machine  # noqa: E402

BENCHES = sorted(p for p in HERE.glob("*.py") if p.stem not in ("common", "run_all", "__init__"))


def main() -> int:
    runs = {}
    for b in BENCHES:
        print(f"== {b.name}", flush=True)
        t, started = time.perf_counter(), time.time()
        proc = subprocess.run([sys.executable, str(b)], cwd=HERE.parent, text=True)
        runs[b.stem] = {"returncode": proc.returncode, "seconds": time.perf_counter() - t}
        # train.py saves per device (train-cpu.json, train-cuda.json): take the newest
        found = [RESULTS / f"{b.stem}.json", *RESULTS.glob(f"{b.stem}-*.json")]
        found = [p for p in found if p.is_file() and p.stat().st_mtime >= started - 1]
        if proc.returncode == 0 and found:
            res = max(found, key=lambda p: p.stat().st_mtime)
            runs[b.stem]["result"] = json.loads(res.read_text())
    summary = {"machine": machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": runs}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["# Benchmark summary", "", f"Machine: `{json.dumps(summary['machine'])}`", ""]
    for name, r in runs.items():
        lines += [
            f"## {name} ({r['seconds']:.0f} s, exit {r['returncode']})",
            "",
            "| case | value |",
            "|---|---:|",
        ]
        for k, v in (r.get("result") or {}).get("results", {}).items():
            lines.append(f"| {k} | {v:.4g} |")
        extra = {
            k: v
            for k, v in (r.get("result") or {}).items()
            if k
            in (
                "meets_target",
                "targets_met",
                "loader_10x_faster",
                "ratios",
                "lens_and_bayer_meet_target",
                "field_bank_distinct_psfs_used",
            )
        }
        if extra:
            lines += ["", f"`{json.dumps(extra)}`"]
        lines.append("")
    (RESULTS / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(r["returncode"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
