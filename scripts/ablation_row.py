"""Print the validation row of an ablation from evaluate's metrics.json (set bsd400_val):
model PSNR per ISO, its margin over bm3d_wiener, the share of images ahead, the worst one.

    python scripts/ablation_row.py runs/abl/NAME/eval/metrics.json [SET]
"""

from __future__ import annotations

import json
import sys


def row(path: str, name: str = "bsd400_val") -> str:
    m = json.load(open(path))
    s = m["per_set"][name]
    cells = []
    for r in s["per_iso"]:
        cells.append(
            f"ISO {r['iso']:g}: {r['psnr_model']:.2f} ({r['gain_over_bm3d_wiener']:+.2f} vs "
            f"bm3d_wiener {r['psnr_bm3d_wiener']:.2f}; ahead on "
            f"{100 * r['share_beating_bm3d_wiener']:.0f} %, worst "
            f"{r['worst_margin_over_bm3d_wiener']:+.2f})"
        )
    return f"{path} [{name}, {s['role']}, {s['images']} images]: " + "; ".join(cells)


if __name__ == "__main__":
    print(row(*sys.argv[1:]))
