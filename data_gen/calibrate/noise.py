"""``residual-train calibrate noise raws=DIR_OR_FILES out=DIR [method=...]``.

Per ISO, from what the files allow (or ``method``):

* ``photon_transfer`` — lit frames in exposure levels of two or more (flat fields or a
  static chart), pairs of dark frames for the shadows (:mod:`.photon_transfer`);
* ``single`` — one lit raw (or several, pooled) of a scene with smooth regions
  (:mod:`.single_frame`);
* ``dark`` — ten or more dark frames (:mod:`.dark`): ``B`` and the dark statistics;
  ``A`` only from a hypothesised ``k1``.

Whenever an ISO has ``dark.min_frames`` dark frames their statistics are added. Files
written to ``out`` (filled in a hidden sibling and renamed when complete; an ``out``
that already holds a different calibration is refused, the same one is reported as is):

* ``noise.json`` — per ISO (``unknown`` when the files carry none) ``A`` and ``B`` per
  plane R, Gr, Gb, B in units of the signal normalised to [0, 1] (black 0, white 1),
  the black and white levels used (DN), ``k1``/``k0`` in DN at ISO 100, the fit's points
  and ``r2``, the method and the frames;
* ``sensor.yaml`` — the generator's sensor (``kind: table``; ``sensor=DIR/sensor.yaml``);
* ``dark.json`` + ``dark_shading_iso<ISO>.npy`` — the dark-frame statistics (format in
  docs/your-camera.md);
* ``index.html`` — the fitted curves with their residuals and R², the dark statistics;
* ``config.yaml`` — the resolved command.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import ValidationError

from data_gen.calibrate import frames as fr
from data_gen.calibrate.dark import DarkSettings, dark_statistics
from data_gen.calibrate.fit import LineFit
from data_gen.calibrate.noise_result import IsoNoise
from data_gen.calibrate.photon_transfer import photon_transfer
from data_gen.calibrate.single_frame import fit_tiles, tile_stats
from data_gen.cfa import PLANES
from data_gen.core.errors import InputError, require
from data_gen.core.paths import filled_atomically
from data_gen.core.typed import Count, Number, Record, Settings, parse

log = logging.getLogger("data_gen")

FORMAT = 1
UNITS = (
    "A, B: sigma^2(v) = A*max(v, 0) + B with v = (DN - black)/(white - black) per plane "
    "(R, Gr, Gb, B of the Bayer mosaic); black, white: DN; k1 (DN/DN), k0 (DN^2): the "
    "project's raw model at ISO 100, sigma^2(s) = [k1*max(s - black, 0) + k0]*ISO/100"
)


class PhotonTransferSettings(Settings):
    bins: Count
    min_pixels: Count


class SingleSettings(Settings):
    block: Count
    bins: Count
    texture: Number


class NoiseCalibration(Settings):
    """``conf/calibrate_noise.yaml`` (its defaults are the file's)."""

    raws: Any
    out: Any
    method: Literal["auto", "photon_transfer", "single", "dark"]
    iso: Number | None = None
    k1: Number | None = None
    clip: Number
    dark_max: Number
    min_signal: Number
    max_clipped: Number
    same_level: Number
    photon_transfer: PhotonTransferSettings
    single: SingleSettings
    dark: DarkSettings


def _names(frames: list[fr.Frame]) -> list[str]:
    return [f.path.name for f in frames]


def choose_method(requested: str, dark: list, lit: list, pairable: list, where: str) -> str:
    """The method for one ISO: ``requested`` (one of :data:`METHODS`), or (``auto``) from
    what the frames allow."""
    if requested in METHODS:
        return requested
    if pairable:
        return "photon_transfer"
    if lit:
        return "single"
    require(bool(dark), f"{where}: no frames")
    return "dark"


def check_lit(
    lit: list[fr.Frame], c: NoiseCalibration, where: str, mean_level: bool = True
) -> None:
    """Saturated or (``mean_level``: by their mean) too-dark lit frames: one line naming
    the file. A scene for the single-frame method is judged by its brightest smooth
    region instead (a dark scene with a few flat highlights is what darktable asks for)."""
    for f in lit:
        require(
            f.clipped <= c.max_clipped,
            f"{f.path}: {100 * f.clipped:.0f} % of the photosites are at the white level "
            f"(saturated; at most {100 * c.max_clipped:.0f} %): lower the exposure",
        )
    if lit and mean_level:
        top = max(lit, key=lambda f: f.level)
        require(
            top.level >= c.min_signal,
            f"{top.path}: the brightest lit frame of {where} reaches {100 * top.level:.2f} % of "
            f"the white level (too dark: the shot noise needs at least "
            f"{100 * c.min_signal:g} %); expose brighter",
        )


def calibrate_photon_transfer(
    dark: list[fr.Frame], levels: list[list[fr.Frame]], c: NoiseCalibration, where: str
) -> tuple[list[LineFit], np.ndarray, str, list[str]]:
    pt = c.photon_transfer
    paired = [lv for lv in levels if len(lv) >= 2]
    if not paired:
        listing = ", ".join(f"{f.path.name} ({100 * f.level:.1f} %)" for lv in levels for f in lv)
        raise InputError(
            f"method photon_transfer needs two or more frames per exposure level; {where} has "
            f"levels of one frame each: {listing or 'no lit frames'}"
        )
    lit = [f for lv in paired for f in lv]
    check_lit(lit, c, where)
    lit_pairs = [(a.dn, b.dn) for lv in paired for a, b in fr.pairs(lv)]
    f0 = lit[0]
    black, source, dark_pairs = f0.black, "file", []
    if len(dark) >= 2:  # the measured dark level is the signal's zero
        black = np.mean([d.dn.mean(axis=(1, 2)) for d in dark], axis=0)
        source = "dark frames"
        dark_pairs = [(a.dn, b.dn) for a, b in fr.pairs(dark)]
    fits = photon_transfer(lit_pairs, dark_pairs, black, f0.white, pt.bins, c.clip, pt.min_pixels)
    for p, fit in enumerate(fits):
        require(
            fit.x.size >= 3,
            f"method photon_transfer: {where} gives {fit.x.size} signal level(s) in plane "
            f"{PLANES[p]}; add flat fields at other exposures or two dark frames",
        )
    used = [f.path.name for f in lit] + ([d.path.name for d in dark] if len(dark) >= 2 else [])
    return fits, black, source, used


def calibrate_single(
    lit: list[fr.Frame], c: NoiseCalibration, where: str
) -> tuple[list[LineFit], list[str]]:
    sf = c.single
    require(
        bool(lit),
        f"method single needs a raw of a lit scene; {where} has only dark frames",
    )
    check_lit(lit, c, where, mean_level=False)
    fits = []
    for p in range(4):
        parts = [tile_stats(f.normalised()[p], f.dn[p] > 0, sf.block, c.clip) for f in lit]
        mu, s2, st = (np.concatenate([q[i] for q in parts]) for i in range(3))
        fit = fit_tiles(mu, s2, st, sf.block**2, sf.bins, sf.texture, 8, c.clip)
        require(
            fit is not None,
            f"method single: {', '.join(_names(lit))} ({where}) has too few smooth regions in "
            f"plane {PLANES[p]} (fewer than 3 levels with 8 smooth tiles); use a defocused "
            "scene with flat highlights and shadows",
        )
        fits.append(fit)
    top = max(float(f.x.max()) for f in fits)
    require(
        top >= c.min_signal,
        f"{lit[0].path}: its brightest smooth region is at {100 * top:.2f} % of the white "
        f"level (too dark: at least {100 * c.min_signal:g} %); expose brighter",
    )
    return fits, _names(lit)


@dataclass
class IsoFrames:
    """One ISO's frames, sorted: dark ones, lit ones and the lit ones by exposure level."""

    where: str
    first: fr.Frame
    dark: list[fr.Frame]
    lit: list[fr.Frame]
    levels: list[list[fr.Frame]]


def _by_photon_transfer(f: IsoFrames, c: NoiseCalibration) -> tuple[list[LineFit], dict]:
    fits, black, source, used = calibrate_photon_transfer(f.dark, f.levels, c, f.where)
    return fits, {"black": np.asarray(black).tolist(), "black_source": source, "frames": used}


def _by_single(f: IsoFrames, c: NoiseCalibration) -> tuple[list[LineFit], dict]:
    fits, used = calibrate_single(f.lit, c, f.where)
    return fits, {"black": f.first.black.tolist(), "black_source": "file", "frames": used}


def _by_dark(f: IsoFrames, c: NoiseCalibration) -> tuple[None, dict]:
    """No fit: ``B`` and (from ``k1``) ``A`` come from the dark statistics."""
    if f.lit:
        x = f.lit[0]
        raise InputError(
            f"{x.path} is not a dark frame (mean level {100 * x.level:.2f} % of the white "
            f"level, dark below {100 * c.dark_max:g} %): method dark takes dark frames only"
        )
    n = c.dark.min_frames
    require(
        len(f.dark) >= n,
        f"method dark needs {n} dark frames per ISO; {f.where} has {len(f.dark)} "
        f"({', '.join(_names(f.dark))})",
    )
    return None, {"frames": _names(f.dark)}


METHODS = {"photon_transfer": _by_photon_transfer, "single": _by_single, "dark": _by_dark}
"""Each method's fit of one ISO: ``(fits or None, what it adds to the result)``."""


def _dark_stats(dark: list[fr.Frame], f0: fr.Frame, d: DarkSettings) -> tuple:
    stats, shading, resid = dark_statistics([x.dn for x in dark], f0.black, f0.pattern, d)
    stats["frame_files"] = _names(dark)
    stats["frame_paths"] = [str(x.path.resolve()) for x in dark]
    return stats, shading, resid


def _from_dark(res: dict, f0: fr.Frame, c: NoiseCalibration) -> np.ndarray:
    """Dark only: ``B`` from the temporal read variance, ``A`` from a hypothesised ``k1``
    (else None); returns the span white − black."""
    stats = res["_dark"][0]
    black = np.asarray(stats["black"])
    span = f0.white - black
    res.update(black=black.tolist(), black_source="dark frames")
    res["B"] = (np.asarray(stats["read_var_dn2"]) / span**2).tolist()
    res["A"] = None
    if c.k1 is not None:
        require(f0.iso is not None, f"k1 = {c.k1}: needs the frames' ISO (give iso=...)")
        res["A"] = (c.k1 * f0.iso / 100 / span).tolist()
        res["A_source"] = "k1 (hypothesised)"
    return span


def calibrate_iso(key: str, frames: list[fr.Frame], c: NoiseCalibration) -> dict:
    """Everything for one ISO: a JSON-able result, plus the arrays (fits, shading) under
    keys starting with ``_``."""
    where = f"ISO {key}"
    dark, lit = fr.split_dark(frames, c.dark_max)
    levels = fr.exposure_levels(lit, c.same_level)
    pairable = [lv for lv in levels if len(lv) >= 2]
    method = choose_method(c.method, dark, lit, pairable, where)
    f0 = frames[0]
    iso = f0.iso
    res: dict = {"method": method, "white": f0.white, "black_file": f0.black.tolist()}
    fits, found = METHODS[method](IsoFrames(where, f0, dark, lit, levels), c)
    res.update(found)
    if len(dark) >= c.dark.min_frames:
        res["_dark"] = _dark_stats(dark, f0, c.dark)
        res["dark_frames"] = len(dark)
    if fits is None:
        span = _from_dark(res, f0, c)
    else:
        span = f0.white - np.asarray(res["black"], np.float64)
        res["A"] = [fit.A for fit in fits]
        res["B"] = [fit.B for fit in fits]
        res["r2"] = [fit.r2 for fit in fits]
        res["fits"] = [fit.as_dict() for fit in fits]
        res["_fits"] = fits
    if iso is not None and res["A"] is not None:
        g = iso / 100
        res["k1"] = (np.asarray(res["A"]) * span / g).tolist()
        res["k0"] = (np.asarray(res["B"]) * span**2 / g).tolist()
    return res


def _public(res: dict) -> dict:
    return {k: v for k, v in res.items() if not k.startswith("_")}


def sensor_config(results: dict[str, IsoNoise], camera: str) -> tuple[dict | None, str]:
    """The generator's ``kind: table`` sensor of the ISOs with both ``A`` and ``B``, or
    ``None`` and why not."""
    rows = [(float(k), r) for k, r in results.items() if k != fr.UNKNOWN and r.A is not None]
    if not rows:
        why = (
            "the frames carry no ISO (give iso=VALUE)"
            if fr.UNKNOWN in results
            else "no ISO has A (dark frames only: give k1=...)"
        )
        return None, why
    rows.sort(key=lambda r: r[0])
    black = float(np.mean([np.mean(r.black) for _, r in rows]))
    return {
        "kind": "table",
        "name": f"{camera or 'camera'} (calibrated)",
        "planes": list(PLANES),
        "isos": [i for i, _ in rows],
        "a": [[float(v) for v in r.A] for _, r in rows],
        "b": [[float(v) for v in r.B] for _, r in rows],
        "ob": black,
        "white": float(rows[0][1].white),
        "iso": [i for i, _ in rows],
    }, ""


def inputs_of(paths: list[Path]) -> list[dict]:
    """What identifies the inputs: absolute path, size and modification time of each."""
    out = []
    for p in paths:
        st = p.stat()
        out.append({"file": str(p.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


class Identity(Record):
    """What identifies a calibration in its summary file (``noise.json``, ``mtf.json``):
    the command's settings but ``out``, and its inputs (:func:`inputs_of`)."""

    config: dict[str, Any] | None = None
    inputs: list[dict[str, Any]] | None = None


def existing(out: Path, config: dict, inputs: list[dict], what: str) -> dict | None:
    """The summary of the same calibration already in ``out`` (same config and inputs),
    ``None`` when ``out`` is absent or empty; a different one is an :class:`InputError`."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    doc_path = out / what
    if doc_path.is_file():
        try:
            doc = json.loads(doc_path.read_text())
            made = Identity.model_validate(doc)
        except (OSError, json.JSONDecodeError, ValidationError):
            made = Identity()  # unreadable: not this calibration
        if made.config == config and made.inputs == inputs:
            return doc
        raise InputError(
            f"out = {str(out)!r} already holds a different calibration ({what} from other "
            "inputs or settings); nothing is overwritten: choose another out"
        )
    raise InputError(f"out = {str(out)!r} already holds files; nothing is overwritten")


def prepare_output(out, cfg: dict, paths: list[Path], what: str):
    """A calibration command's ``out`` folder (from the setting ``out``), its config
    (``cfg`` without ``out``), what identifies its inputs, and the same calibration's
    summary ``what`` already there (or None; a different one there is an
    :class:`InputError`)."""
    require(out not in (None, "???"), "out is missing: give out=DIR (a new directory)")
    out = Path(str(out)).expanduser()
    config = {k: v for k, v in cfg.items() if k != "out"}
    inputs = inputs_of(paths)
    return out, config, inputs, existing(out, config, inputs, what)


def run(cfg: dict) -> dict:
    """The ``calibrate noise`` command (``cfg``: conf/calibrate_noise.yaml, resolved)."""
    c = parse(NoiseCalibration, cfg, "")
    paths = fr.find_raws(c.raws)
    out, config, inputs, done = prepare_output(c.out, cfg, paths, "noise.json")
    if done is not None:
        log.info("%s already holds this calibration; nothing to do", out)
        isos = {k: IsoNoise.of(r, f"{out / 'noise.json'} ISO {k}") for k, r in done["isos"].items()}
        return {"out": str(out), "unchanged": True, "isos": _summary(isos)}
    groups = fr.load_frames(paths, c.iso, c.clip)
    f0 = next(iter(groups.values()))[0]
    results, isos = {}, {}
    for key, frames in groups.items():
        results[key] = calibrate_iso(key, frames, c)  # as noise.json and dark.json write it
        r = isos[key] = IsoNoise.of(results[key], f"ISO {key}")
        log.info(
            "ISO %s: method %s from %d file(s)%s; A = %s, B = %s",
            key,
            r.method,
            len(r.frames),
            f", dark statistics from {r.dark_frames} dark frames" if r.dark is not None else "",
            "-" if r.A is None else ", ".join(f"{v:.4g}" for v in r.A),
            ", ".join(f"{v:.4g}" for v in r.B),
        )
    doc = {
        "format": FORMAT,
        "camera": f0.camera,
        "cfa": f0.pattern,
        "size": [2 * f0.dn.shape[1], 2 * f0.dn.shape[2]],
        "planes": list(PLANES),
        "units": UNITS,
        "isos": {k: _public(r) for k, r in results.items()},
        "inputs": inputs,
        "config": config,
    }
    sensor, why = sensor_config(isos, f0.camera)
    from data_gen.calibrate.page import noise_page

    with filled_atomically(out) as tmp:
        (tmp / "noise.json").write_text(json.dumps(doc, indent=1) + "\n")
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True))
        dark_doc = write_dark(tmp, results)
        if sensor is not None:
            head = (
                "# The calibrated sensor: residual-train generate sensor=THIS_FILE\n"
                "# (a, b per ISO and plane R, Gr, Gb, B; linear in ISO between the rows)\n"
            )
            if dark_doc:  # what sensor.noise=physical | dark_frames read
                head += (
                    "# noise: poisson_gaussian | physical | dark_frames (from dark.json: "
                    "docs/your-camera.md)\n"
                )
                sensor = {**sensor, "noise": "poisson_gaussian", "dark": "dark.json"}
            (tmp / "sensor.yaml").write_text(head + yaml.safe_dump(sensor, sort_keys=False))
        (tmp / "index.html").write_text(noise_page(doc, isos, dark_doc, why))
    summary = {
        "out": str(out),
        "isos": _summary(isos),
        "sensor": str(out / "sensor.yaml") if sensor is not None else None,
        "dark": str(out / "dark.json") if dark_doc else None,
        "report": str(out / "index.html"),
    }
    if sensor is None:
        summary["no_sensor_because"] = why
    return summary


def _summary(isos: dict[str, IsoNoise]) -> dict:
    return {k: {"method": r.method, "A": r.A, "B": r.B, "r2": r.r2} for k, r in isos.items()}


def write_dark(d: Path, results: dict[str, dict]) -> dict | None:
    """``dark.json`` and one ``dark_shading_iso<ISO>.npy`` per ISO with dark statistics."""
    isos = {}
    for key, r in results.items():
        if "_dark" not in r:
            continue
        stats, shading, _ = r["_dark"]
        name = f"dark_shading_iso{key}.npy"
        np.save(d / name, shading)
        span = r["white"] - np.asarray(stats["black"])
        isos[key] = {
            **stats,
            "B": (np.asarray(stats["read_var_dn2"]) / span**2).tolist(),
            "white": r["white"],
            "black_file": r["black_file"],
            "shading_file": name,
        }
    if not isos:
        return None
    doc = {
        "format": FORMAT,
        "planes": list(PLANES),
        "units": "DN at the frames' ISO unless named otherwise; B normalised like noise.json",
        "shading": "float32 (4, H/2, W/2): planes R, Gr, Gb, B, DN above 'black'",
        "bad_pixels": "[row, column] photosites of the mosaic",
        "isos": isos,
    }
    (d / "dark.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc
