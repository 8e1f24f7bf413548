"""``python -m data_gen.verify DIR``: check a dataset against its manifest.

Exit status 0 when every shard is present, has the recorded size and sha256, and
holds the recorded number of samples of schema v1; 1 when something is wrong (each
problem on its own line); 2 when DIR is not a dataset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_gen.errors import InputError
from data_gen.shards import load_manifest, stray_files, verify


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m data_gen.verify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("data_dir", help="dataset directory (holds manifest.json)")
    ap.add_argument(
        "--no-checksums", action="store_true", help="skip sha256 (sizes and HDF5 structure only)"
    )
    args = ap.parse_args(argv)
    d = Path(args.data_dir)
    try:
        problems, n = verify(d, checksums=not args.no_checksums)
        manifest = load_manifest(d)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for s in stray_files(d, (s["name"] for s in manifest["shards"])):
        print(f"note: {s} is a temporary file left by an interrupted writer (safe to delete)")
    if problems:
        for p in problems:
            print(f"FAIL {d}: {p}")
        print(f"{len(problems)} problem(s) in {d}")
        return 1
    print(
        f"OK {d}: {len(manifest['shards'])} shards, {n} samples, "
        f"config {manifest['config_hash'][:12]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
