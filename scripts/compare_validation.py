"""Does a candidate model beat the current one on validation? The gate before publishing
a new `default` version (docs/design.md §8, "Protocol").

    python scripts/compare_validation.py CANDIDATE/metrics.json CURRENT/metrics.json [SET] [--z Z]

Both are evaluate's metrics.json on the same validation set (default bsd400_val), the same
ISOs and seed. Prints the per-ISO mean PSNR of both, their difference, its standard error
and the share of images where the candidate is ahead; exits 0 when at every ISO the
candidate's mean PSNR is higher by more than ``Z`` (default 2) standard errors of the
per-image differences (paired: the same photographs under the same noise), 1 otherwise, 2
when the two evaluations are not comparable. A gain within that noise is not a win: at
+0.003 dB with the candidate ahead on 45 % of the images the next 40 photographs could as
well say the opposite, and every published version is a 20 MB directory that ships.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

Z_DEFAULT = 2.0


def compare(
    cand: dict, cur: dict, name: str = "bsd400_val", z: float = Z_DEFAULT
) -> tuple[bool, list[str]]:
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
        gain = float(d.mean())
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else math.inf
        # gain / se; ±inf when every image moved by the same amount (se = 0)
        t = gain / se if se > 0 else math.copysign(math.inf, gain) if gain else 0.0
        wins &= gain > 0 and (z <= 0 or t > z)
        lines.append(
            f"ISO {iso:g}: candidate {mc:.3f} dB, current {mo:.3f} dB, {gain:+.3f} dB "
            f"(± {se:.3f} standard error, {t:+.1f} of them); ahead on "
            f"{100 * (d > 0).mean():.0f} % of {len(d)} images (worst {d.min():+.3f})"
        )
    return wins, lines


def main() -> int:
    p = argparse.ArgumentParser(usage=__doc__.split("\n\n")[1].strip())
    p.add_argument("candidate")
    p.add_argument("current")
    p.add_argument("set", nargs="?", default="bsd400_val")
    p.add_argument("--z", type=float, default=Z_DEFAULT)
    a = p.parse_args()
    try:
        cand, cur = (json.load(open(f)) for f in (a.candidate, a.current))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        wins, lines = compare(cand, cur, a.set, a.z)
    except ValueError as e:
        print(f"error: not comparable: {e}", file=sys.stderr)
        return 2
    except (KeyError, TypeError) as e:  # e.g. a components evaluation's metrics.json
        print(f"error: not an evaluation of one model per image: no {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(
        "candidate WINS on validation"
        if wins
        else f"candidate does NOT win on validation (a win: ahead by more than {a.z:g} "
        "standard errors at every ISO)"
    )
    return 0 if wins else 1


if __name__ == "__main__":
    sys.exit(main())
