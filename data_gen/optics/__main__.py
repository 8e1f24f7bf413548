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

from data_gen.core.cli import run_app
from data_gen.core.errors import require
from data_gen.core.paths import CONF
from data_gen.core.typed import KindSettings, parse
from data_gen.core.values import integer, number, numbers
from data_gen.optics import FieldBank, LensState, PSFBank, build_bank, save_bank
from data_gen.optics.atlas import atlas_image, write_atlas

USAGE = "usage: python -m data_gen.optics bank|atlas lens=NAME out=FILE [key=value ...]"


class LensHead(KindSettings):
    """What the commands read of any lens config: its ``kind`` and, for lens descriptions
    (measured grids have none), the channels' ``wavelengths_nm``."""

    kind: str | None = None
    wavelengths_nm: list[float] | None = None


def as_field_bank(bank: PSFBank, lens: dict) -> FieldBank:
    """A position-independent single PSF as a 1-point polar bank (files of many kernels
    have no field geometry and are refused)."""
    if isinstance(bank, FieldBank):
        return bank
    n, kind = bank.psfs.shape[0], parse(LensHead, lens, "lens").kind
    require(
        n == 1,
        f"lens.kind = {kind}: {n} kernels without positions "
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


class _Bank:
    """``bank``: the lens's field bank saved to ``out`` (.h5)."""

    @staticmethod
    def settings(c: dict) -> dict:
        return {}

    @staticmethod
    def run(c: dict, a: dict, bank: FieldBank, out: Path, channels: int) -> dict:
        save_bank(bank, out)
        return {"bank": str(out), "shape": list(bank.grid.shape), "geometry": bank.geometry}


class _Atlas:
    """``atlas``: the bank's PSFs drawn over the frame into ``out`` (.png)."""

    settings = staticmethod(atlas_settings)

    @staticmethod
    def run(c: dict, a: dict, bank: FieldBank, out: Path, channels: int) -> dict:
        wl = parse(LensHead, c["lens"], "lens").wavelengths_nm
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


COMMANDS = {"bank": _Bank, "atlas": _Atlas}
"""``python -m data_gen.optics <command>``: its settings (typed before the bank is
computed) and what it does with the lens's field bank."""


def run(c: dict) -> dict:
    command = c["command"]
    require(command in COMMANDS, f"command = {command!r}: {USAGE}")
    cmd = COMMANDS[command]
    lens, channels = c["lens"], integer(c["channels"], "channels", 1)
    a = cmd.settings(c)
    bank = as_field_bank(build_bank(lens, channels, None, bool(c["progress"])), lens)
    return cmd.run(c, a, bank, Path(c["out"]), channels)


def main() -> None:
    run_app(CONF, "optics", run, words={"command": "bank|atlas"})


if __name__ == "__main__":
    main()
