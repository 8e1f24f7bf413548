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
from data_gen.values import integer, number, numbers

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


def atlas_settings(c: dict) -> dict:
    """The atlas's values, typed before the bank is computed (one line otherwise)."""
    return {
        "state": integer(c["state"], "state", 0),
        "points": tuple(integer(v, "points", 1) for v in numbers(c["points"], "points", 2)),
        "zoom": integer(c["zoom"], "zoom", 1),
        "decades": number(c["decades"], "decades", positive=True),
        "gamma": number(c["gamma"], "gamma", positive=True),
    }


def run(c: dict) -> dict:
    command = c["command"]
    require(command in ("bank", "atlas"), f"command = {command!r}: {USAGE}")
    lens, channels = c["lens"], integer(c["channels"], "channels", 1)
    a = atlas_settings(c) if command == "atlas" else {}
    bank = as_field_bank(build_bank(lens, channels, None, bool(c["progress"])), lens)
    out = Path(c["out"])
    if command == "bank":
        save_bank(bank, out)
        return {"bank": str(out), "shape": list(bank.grid.shape), "geometry": bank.geometry}
    wl = lens.get("wavelengths_nm")
    labels = [f"{w:g} nm" for w in wl] if wl and len(wl) == channels else None
    state = integer(a["state"], "state", 0, len(bank.states) - 1)
    img = atlas_image(
        bank, state, a["points"], a["zoom"], c["scale"], a["decades"], a["gamma"], labels
    )
    info = {
        "config": yaml.safe_dump(c, sort_keys=True),
        "state": json.dumps(bank.states[state].__dict__),
    }
    write_atlas(out, img, info)
    return {"atlas": str(out), "size": [int(img.shape[1]), int(img.shape[0])]}


def main() -> None:
    run_app(CONF, "optics", run, words={"command": "bank|atlas"})


if __name__ == "__main__":
    main()
