"""``python -m data_gen.verify DIR [checksums=false]``: check a dataset against its manifest.

Exit status 0 when every shard is present, has the recorded size and sha256, and
holds the recorded number of samples of schema v1; 1 when something is wrong (each
problem on its own line); 2 when DIR is not a dataset.
"""

from __future__ import annotations

import sys
from pathlib import Path

from data_gen.core.cli import run_app
from data_gen.core.errors import require
from data_gen.core.paths import CONF
from data_gen.shards import MANIFEST, progress_without_manifest, read_manifest, stray_files, verify


def run(cfg: dict) -> dict:
    d = Path(str(cfg["dir"]))
    require(d.is_dir(), f"dir = {str(d)!r}: not a directory")
    for s in stray_files(d):
        print(f"note: {s} is a temporary file left by an interrupted writer (safe to delete)")
    if not (d / MANIFEST).is_file():
        print(f"FAIL {progress_without_manifest(d)}")
        sys.exit(1)
    problems, n = verify(d, checksums=bool(cfg["checksums"]))
    manifest = read_manifest(d)
    if problems:
        for p in problems:
            print(f"FAIL {d}: {p}")
        print(f"{len(problems)} problem(s) in {d}")
        sys.exit(1)
    print(f"OK {d}: {len(manifest.shards)} shards, {n} samples, config {manifest.config_hash[:12]}")
    return {"dir": str(d), "shards": len(manifest.shards), "samples": n, "ok": True}


def main() -> None:
    run_app(CONF, "verify", run, words={"dir": "*"}, flags={"--no-checksums": "checksums=false"})


if __name__ == "__main__":
    main()
