"""Sensor noise model (docs/design.md §1) in normalised units.

Raw model, per channel, signal ``s`` in DN at ISO ``I``:
``σ²(s) = [k1·(s − OB) + k0] · I/100`` (``k1`` DN/DN, ``k0`` DN², both at ISO 100).
With ``v = (s − OB) / (white − OB)`` (0 = black level, 1 = white level) this is
``σ²(v) = a·v + b`` with ``a = k1·g/(white − OB)``, ``b = k0·g/(white − OB)²``,
``g = I/100``. darktable's profiles give ``a``, ``b`` per ISO directly on that scale;
the equivalent ``k0``, ``k1`` are recorded with every sample so deployment can
recompute ``σ`` from the sample's metadata.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen.errors import InputError, require
from data_gen.noise import NoiseModel
from data_gen.noise_kinds import NoiseKind, build_noise_kind, default_kind
from data_gen.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoiseParams:
    """Per-sample noise parameters: ``a``, ``b`` ``(C,)`` normalised; ``k0``, ``k1`` ``(C,)`` raw DN."""

    iso: float
    a: np.ndarray
    b: np.ndarray
    k0: np.ndarray
    k1: np.ndarray
    ob: float
    white: float

    @property
    def model(self) -> NoiseModel:
        """The noise level ``σ²(v) = a·max(v, 0) + b`` of this sample."""
        return NoiseModel(self.a, self.b)


class ISOSampler:
    """ISO drawn uniformly from a list, or log-uniformly from ``{min, max}``."""

    def __init__(self, spec, where: str = "sensor.iso") -> None:
        if isinstance(spec, (int, float)):
            spec = [spec]
        if hasattr(spec, "keys"):
            keys = set(spec.keys())
            require(
                keys == {"min", "max"},
                f"{where} = {dict(spec)}: a range needs exactly the keys min and max",
            )
            lo, hi = float(spec["min"]), float(spec["max"])
            require(lo > 0, f"{where}.min = {lo:g}: ISO must be > 0")
            require(hi >= lo, f"{where}: max {hi:g} < min {lo:g}")
            self.values: list[float] | None = None
            self.range = (lo, hi)
        else:
            vals = [float(v) for v in spec]
            require(bool(vals), f"{where} is empty: give at least one ISO value")
            for v in vals:
                require(v > 0 and math.isfinite(v), f"{where} contains {v:g}: ISO must be > 0")
            self.values = vals
            self.range = (min(vals), max(vals))

    def draw_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` ISOs at once ``(n,)`` float64 (the same law as :meth:`draw`)."""
        if self.values is not None:
            return np.asarray(self.values, np.float64)[rng.integers(len(self.values), size=n)]
        lo, hi = self.range
        return np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))

    def draw(self, rng: np.random.Generator) -> float:
        if self.values is not None:
            return self.values[int(rng.integers(len(self.values)))]
        lo, hi = self.range
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


class SensorModel:
    """A sensor: ``ab(iso)`` its noise level ``σ²(v) = a·max(v, 0) + b`` per channel (``b``
    the temporal signal-independent variance); ``noise`` the kind of realisation it draws
    (:mod:`data_gen.noise_kinds`, default Poisson–Gaussian); ``params(iso)`` the
    per-channel noise parameters of a sample, ``b`` the kind's total signal-independent
    variance."""

    name: str
    ob: float
    white: float
    channels: int
    iso: ISOSampler
    noise: NoiseKind = default_kind()

    def ab(self, iso: float) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def params(self, iso: float) -> NoiseParams:
        return self._from_ab(iso, *self.ab(iso))

    def _from_ab(self, iso: float, a: np.ndarray, b: np.ndarray) -> NoiseParams:
        span = self.white - self.ob
        g = iso / 100.0
        b = self.noise.total_variance(iso, b)
        return NoiseParams(
            iso=float(iso),
            a=np.asarray(a, np.float32),
            b=np.asarray(b, np.float32),
            k1=np.asarray(a * span / g, np.float32),
            k0=np.asarray(b * span * span / g, np.float32),
            ob=float(self.ob),
            white=float(self.white),
        )


def _check_levels(ob: float, white: float, where: str) -> None:
    require(math.isfinite(ob), f"{where}.ob = {ob} must be finite")
    require(
        math.isfinite(white) and white > ob,
        f"{where}.white = {white:g} must be greater than {where}.ob = {ob:g}",
    )


class RawNoiseModel(SensorModel):
    """docs/design.md §1 model with scalar or per-channel ``k0`` (DN²), ``k1`` (DN/DN) at ISO 100."""

    def __init__(
        self,
        k0,
        k1,
        ob: float,
        white: float,
        iso,
        channels: int = 3,
        name: str = "sensor",
        where: str = "sensor",
    ) -> None:
        self.name, self.channels = name, channels
        self.ob, self.white = float(ob), float(white)
        _check_levels(self.ob, self.white, where)
        self.k0 = self._per_channel(k0, f"{where}.k0")
        self.k1 = self._per_channel(k1, f"{where}.k1")
        for key, arr in (("k0", self.k0), ("k1", self.k1)):
            bad = arr[arr < 0]
            if bad.size:
                raise InputError(
                    f"{where}.{key} = {float(bad[0]):g} must be >= 0 "
                    f"({'shot-noise slope' if key == 'k1' else 'dark + read variance'})"
                )
        self.iso = ISOSampler(iso, f"{where}.iso")

    def _per_channel(self, v, where: str) -> np.ndarray:
        arr = np.atleast_1d(np.asarray(v, dtype=np.float64))
        if arr.size == 1:
            arr = np.repeat(arr, self.channels)
        require(
            arr.shape == (self.channels,),
            f"{where} has {arr.size} values; give one or one per channel ({self.channels})",
        )
        require(bool(np.isfinite(arr).all()), f"{where} = {arr.tolist()} must be finite")
        return arr

    def ab(self, iso: float) -> tuple[np.ndarray, np.ndarray]:
        span = self.white - self.ob
        g = iso / 100.0
        return self.k1 * g / span, self.k0 * g / span**2


class DarktableNoiseModel(SensorModel):
    """darktable ``noiseprofiles.json``: per-ISO ``a``, ``b`` per channel, interpolated in ISO.

    ``negative_b``: ``'clamp'`` sets negative ``b`` to 0 with a warning; ``'error'``
    refuses the profile. ``ob``/``white`` only serve to express ``k0``/``k1`` in DN
    in the metadata (darktable's values are already normalised).
    """

    def __init__(
        self,
        profile: str,
        maker: str,
        model: str,
        iso,
        ob: float = 0.0,
        white: float = 1.0,
        negative_b: str = "clamp",
        channels: int = 3,
        where: str = "sensor",
    ) -> None:
        self.name, self.channels = f"{maker} {model}", channels
        self.ob, self.white = float(ob), float(white)
        _check_levels(self.ob, self.white, where)
        require(
            negative_b in ("clamp", "error"),
            f"{where}.negative_b = {negative_b!r}: use 'clamp' or 'error'",
        )
        path = Path(str(profile)).expanduser()
        require(
            path.is_file(),
            f"{where}.profile = {str(profile)!r}: file does not exist (darktable installs it as "
            "/usr/share/darktable/noiseprofiles.json; or give sensor.profile=PATH)",
        )
        try:
            doc = json.loads(path.read_text())
            makers = doc["noiseprofiles"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{path}: not a darktable noiseprofiles.json ({e})") from None
        entry = None
        for mk in makers:
            if str(mk.get("maker", "")).lower() == str(maker).lower():
                for mo in mk.get("models", []):
                    if str(mo.get("model", "")).lower() == str(model).lower():
                        entry = mo
        if entry is None:
            known = [
                f"{mk.get('maker')} {mo.get('model')}"
                for mk in makers
                for mo in mk.get("models", [])
            ]
            close = difflib.get_close_matches(f"{maker} {model}", known, n=5, cutoff=0.5)
            raise InputError(
                f"{where}: camera {maker!r} {model!r} not found in {path}"
                + (f"; closest: {', '.join(close)}" if close else "")
            )
        rows = []
        for p in entry["profiles"]:
            if p.get("skip"):
                continue
            a, b = np.asarray(p["a"], float), np.asarray(p["b"], float)
            require(
                a.shape == (channels,) and b.shape == (channels,),
                f"{path}: {maker} {model} ISO {p['iso']}: expected {channels} values of a and b",
            )
            if (b < 0).any():
                msg = (
                    f"{path}: {maker} {model} ISO {p['iso']} has negative b = "
                    f"{b.tolist()} (variance a·x + b < 0 in the shadows)"
                )
                if negative_b == "error":
                    raise InputError(msg + f"; set {where}.negative_b=clamp to clamp it to 0")
                log.warning("%s; clamped to 0", msg)
                b = np.maximum(b, 0.0)
            rows.append((float(p["iso"]), a, b))
        require(bool(rows), f"{path}: {maker} {model} has no usable profiles")
        rows.sort(key=lambda r: r[0])
        self.isos = np.array([r[0] for r in rows])
        self.a = np.stack([r[1] for r in rows])
        self.b = np.stack([r[2] for r in rows])
        self.iso = ISOSampler(iso, f"{where}.iso")
        lo, hi = self.iso.range
        require(
            lo >= self.isos[0] and hi <= self.isos[-1],
            f"{where}.iso spans {lo:g}..{hi:g} but the profile of {maker} {model} covers "
            f"ISO {self.isos[0]:g}..{self.isos[-1]:g}",
        )

    def ab(self, iso: float) -> tuple[np.ndarray, np.ndarray]:
        a = np.array([np.interp(iso, self.isos, self.a[:, c]) for c in range(self.channels)])
        b = np.array([np.interp(iso, self.isos, self.b[:, c]) for c in range(self.channels)])
        return a, b


class TableNoiseModel(SensorModel):
    """A calibrated per-ISO table (``residual-train calibrate noise`` writes it): ``a``, ``b``
    ``(n_iso, P)`` normalised, per plane, at the ISOs ``isos``; linear in ISO between them
    (as the darktable kind); ISOs outside them are refused.

    ``P`` = 4 planes R, Gr, Gb, B (a Bayer calibration) serve a 3-channel sensor as R, the
    mean of the greens, B; ``P`` = the sensor's channel count is used as is. ``ob``,
    ``white``: the levels the calibration normalised by (DN), for ``k0``/``k1`` in DN.
    """

    def __init__(
        self,
        isos,
        a,
        b,
        ob: float,
        white: float,
        iso=None,
        channels: int = 3,
        name: str = "calibrated",
        where: str = "sensor",
    ) -> None:
        self.name, self.channels = name, channels
        self.ob, self.white = float(ob), float(white)
        _check_levels(self.ob, self.white, where)
        try:
            isos_ = np.asarray(isos, np.float64).reshape(-1)
            a_, b_ = np.asarray(a, np.float64), np.asarray(b, np.float64)
        except (TypeError, ValueError):
            raise InputError(
                f"{where}: isos, a and b must be numbers (a, b: one row per ISO)"
            ) from None
        require(isos_.size >= 1, f"{where}.isos is empty")
        require(
            a_.ndim == 2 and a_.shape == b_.shape and a_.shape[0] == isos_.size,
            f"{where}: a {a_.shape} and b {b_.shape} need one row per ISO ({isos_.size} ISOs)",
        )
        require(
            bool(np.all(np.diff(isos_) > 0)) and bool((isos_ > 0).all()),
            f"{where}.isos = {isos_.tolist()} must be positive and increasing",
        )
        planes = a_.shape[1]
        if planes == 4 and channels == 3:  # R, Gr, Gb, B -> R, G, B
            a_ = np.stack([a_[:, 0], (a_[:, 1] + a_[:, 2]) / 2, a_[:, 3]], 1)
            b_ = np.stack([b_[:, 0], (b_[:, 1] + b_[:, 2]) / 2, b_[:, 3]], 1)
        require(
            a_.shape[1] == channels,
            f"{where}: the table has {planes} values per ISO; channels = {channels} needs "
            f"{channels} (or 4 Bayer planes for 3 channels)",
        )
        for key, arr in (("a", a_), ("b", b_)):
            require(
                bool(np.isfinite(arr).all() and (arr >= 0).all()),
                f"{where}.{key} = {arr.tolist()} must be finite and >= 0",
            )
        self.isos, self.a, self.b = isos_, a_, b_
        self.iso = ISOSampler(isos_.tolist() if iso is None else iso, f"{where}.iso")
        lo, hi = self.iso.range
        require(
            lo >= isos_[0] and hi <= isos_[-1],
            f"{where}.iso spans {lo:g}..{hi:g} but the calibration covers ISO "
            f"{isos_[0]:g}..{isos_[-1]:g}",
        )

    def ab(self, iso: float) -> tuple[np.ndarray, np.ndarray]:
        a = np.array([np.interp(iso, self.isos, self.a[:, c]) for c in range(self.channels)])
        b = np.array([np.interp(iso, self.isos, self.b[:, c]) for c in range(self.channels)])
        return a, b


SENSORS = Registry("sensor")


def _required(cfg: dict, keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        require(cfg.get(key) is not None, f"{where}.{key} is missing from the sensor config")


@SENSORS.register("raw")
def _raw(cfg: dict, channels: int, where: str) -> RawNoiseModel:
    _required(cfg, ("k0", "k1", "ob", "white", "iso"), where)
    return RawNoiseModel(
        cfg["k0"], cfg["k1"], cfg["ob"], cfg["white"], cfg["iso"], channels,
        cfg.get("name", "sensor"), where,
    )  # fmt: skip


@SENSORS.register("darktable")
def _darktable(cfg: dict, channels: int, where: str) -> DarktableNoiseModel:
    _required(cfg, ("profile", "maker", "model", "iso"), where)
    return DarktableNoiseModel(
        cfg["profile"], cfg["maker"], cfg["model"], cfg["iso"], cfg.get("ob", 0.0),
        cfg.get("white", 1.0), cfg.get("negative_b", "clamp"), channels, where,
    )  # fmt: skip


@SENSORS.register("table")
def _table(cfg: dict, channels: int, where: str) -> TableNoiseModel:
    _required(cfg, ("isos", "a", "b", "ob", "white"), where)
    return TableNoiseModel(
        cfg["isos"], cfg["a"], cfg["b"], cfg["ob"], cfg["white"], cfg.get("iso"), channels,
        cfg.get("name", "calibrated"), where,
    )  # fmt: skip


def build_sensor(cfg: dict, channels: int = 3, where: str = "sensor") -> SensorModel:
    """Sensor model from a plain config dict (``kind`` names the builder in :data:`SENSORS`;
    a missing kind is ``raw``), with the noise kind ``noise`` names (default
    ``poisson_gaussian``; :mod:`data_gen.noise_kinds`)."""
    sensor = SENSORS.build({"kind": "raw", **cfg}, channels, where=where)
    sensor.noise = build_noise_kind(cfg, sensor, channels, where)
    return sensor
