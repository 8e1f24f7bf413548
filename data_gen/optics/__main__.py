"""``python -m data_gen.optics bank lens=NAME out=FILE.h5`` — precompute a PSF bank;
``python -m data_gen.optics atlas lens=NAME out=FILE.png`` — draw one.

Overrides are Hydra's (``conf/optics.yaml`` and the ``conf/lens/`` group), e.g.
``lens=soft_zoom lens.heights=12 scale=gamma points=[9,12]``. A generator run with
``lens.kind=bank lens.path=FILE.h5`` uses a precomputed bank.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from data_gen.cli import run_app
from data_gen.errors import require
from data_gen.optics import FieldBank, LensState, PSFBank, build_bank, save_bank
from data_gen.optics.atlas import atlas_image, write_atlas
from data_gen.paths import CONF

USAGE = "usage: python -m data_gen.optics bank|atlas lens=NAME out=FILE [key=value ...]"


def as_field_bank(bank: PSFBank, lens: dict) -> FieldBank:
    """A position-independent single PSF as a 1-point polar bank (files of many kernels
    have no field geometry and are refused)."""
    if isinstance(bank, FieldBank):
        return bank
    require(
        bank.psfs.shape[0] == 1,
        f"lens.kind = {lens.get('kind')}: {bank.psfs.shape[0]} kernels without positions "
        "cannot form a field bank; use a lens description (kind: model) or a grid",
    )
    return FieldBank(
        states=list(bank.states) or [LensState()],
        name=bank.name,
        grid=bank.psfs[None, None],
        geometry="polar",
        axis1=np.zeros(1),
        axis2=np.zeros(1),
        description=dict(lens),
    )


def run(c: dict) -> dict:
    command = c["command"]
    require(command in ("bank", "atlas"), f"command = {command!r}: {USAGE}")
    lens, channels = c["lens"], int(c["channels"])
    bank = as_field_bank(build_bank(lens, channels, None, bool(c["progress"])), lens)
    out = Path(c["out"])
    if command == "bank":
        save_bank(bank, out)
        summary = {"bank": str(out), "shape": list(bank.grid.shape), "geometry": bank.geometry}
    else:
        wl = lens.get("wavelengths_nm")
        labels = [f"{w:g} nm" for w in wl] if wl and len(wl) == channels else None
        s = bank.states[int(c["state"])] if 0 <= int(c["state"]) < len(bank.states) else None
        require(s is not None, f"state = {c['state']} is outside 0..{len(bank.states) - 1}")
        img = atlas_image(
            bank,
            int(c["state"]),
            tuple(c["points"]),
            int(c["zoom"]),
            c["scale"],
            float(c["decades"]),
            float(c["gamma"]),
            labels,
        )
        info = {"config": yaml.safe_dump(c, sort_keys=True), "state": json.dumps(s.__dict__)}
        write_atlas(out, img, info)
        summary = {"atlas": str(out), "size": [int(img.shape[1]), int(img.shape[0])]}
    return summary


def main() -> None:
    run_app(CONF, "optics", run, words={"command": "bank|atlas"})


if __name__ == "__main__":
    main()
