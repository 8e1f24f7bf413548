"""Does a candidate model beat the current one on validation? The gate before publishing
a new `default` version (docs/design.md §8, "Protocol").

    python scripts/compare_validation.py CANDIDATE/metrics.json CURRENT/metrics.json [SET]

Both are evaluate's metrics.json on the same validation set (default bsd400_val), the same
ISOs and seed. Prints the per-ISO mean PSNR of both, their difference and the share of
images where the candidate is ahead; exits 0 when the candidate's mean PSNR is higher at
every ISO, 1 otherwise, 2 when the two evaluations are not comparable.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def compare(cand: dict, cur: dict, name: str = "bsd400_val") -> tuple[bool, list[str]]:
    for key in ("isos", "seed"):
        if cand[key] != cur[key]:
            raise ValueError(f"{key} differ: {cand[key]} vs {cur[key]}")
    rows_c = {(r["image"], r["iso"]): r for r in cand["per_image"]}
    rows_o = {(r["image"], r["iso"]): r for r in cur["per_image"]}
    keys = sorted(k for k in rows_c if k[0].split("/", 1)[0] == name)
    if not keys or set(keys) != {k for k in rows_o if k[0].split("/", 1)[0] == name}:
        raise ValueError(f"the two evaluations do not hold the same images of set {name}")
    wins, lines = True, []
    for iso in cand["isos"]:
        d = np.array(
            [rows_c[k]["psnr_model"] - rows_o[k]["psnr_model"] for k in keys if k[1] == iso]
        )
        mc = np.mean([rows_c[k]["psnr_model"] for k in keys if k[1] == iso])
        mo = np.mean([rows_o[k]["psnr_model"] for k in keys if k[1] == iso])
        wins &= bool(d.mean() > 0)
        lines.append(
            f"ISO {iso:g}: candidate {mc:.3f} dB, current {mo:.3f} dB, {d.mean():+.3f} dB; "
            f"ahead on {100 * (d > 0).mean():.0f} % of {len(d)} images (worst {d.min():+.3f})"
        )
    return wins, lines


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    cand, cur = (json.load(open(p)) for p in sys.argv[1:3])
    try:
        wins, lines = compare(cand, cur, *sys.argv[3:])
    except ValueError as e:
        print(f"error: not comparable: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print("candidate WINS on validation" if wins else "candidate does NOT win on validation")
    return 0 if wins else 1


if __name__ == "__main__":
    sys.exit(main())
