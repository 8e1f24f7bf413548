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
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator

from data_gen.core.errors import InputError, require
from data_gen.core.registry import Registry
from data_gen.core.typed import Text, check, parse
from data_gen.darktable import load_noiseprofiles
from data_gen.noise import NoiseModel, at_iso
from data_gen.noise_kinds import NoiseKind, build_noise_kind, default_kind
from data_gen.noise_kinds.base import NoiseKeys

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


def normalised_ab(k0, k1, iso, ob, white) -> tuple[np.ndarray, np.ndarray]:
    """Raw-DN noise parameters at ISO 100 (``k0`` DN², ``k1`` DN, as a shard's ``meta``
    stores them) -> normalised ``a = k1·g/span``, ``b = k0·g/span²`` (float64; ``g =
    ISO/100``, ``span = white − ob``); arrays broadcast. The inverse of what
    :meth:`SensorModel.params` stores (``k1 = a·span/g``, ``k0 = b·span²/g``)."""
    span = (np.asarray(white) - np.asarray(ob)).astype(np.float64)  # in the levels' dtype
    g = np.asarray(iso, np.float64) / 100.0
    a = np.asarray(k1, np.float64) * g / span
    b = np.asarray(k0, np.float64) * g / span**2
    return a, b


def dn_k(a, b, iso, ob, white) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`normalised_ab` for one sample: normalised ``a``, ``b`` ``(C,)``
    at ``iso`` -> raw-DN ``k0 = b·span²/g``, ``k1 = a·span/g`` at ISO 100, in the dtype of
    ``a`` and ``b`` (the scalars are Python floats, which do not widen them)."""
    span = float(white) - float(ob)
    g = float(iso) / 100.0
    return b * span * span / g, a * span / g


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
        b = self.noise.total_variance(iso, b)
        k0, k1 = dn_k(a, b, iso, self.ob, self.white)
        return NoiseParams(
            iso=float(iso),
            a=np.asarray(a, np.float32),
            b=np.asarray(b, np.float32),
            k1=np.asarray(k1, np.float32),
            k0=np.asarray(k0, np.float32),
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
        return normalised_ab(self.k0, self.k1, iso, self.ob, self.white)


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
        doc = load_noiseprofiles(path)
        found = doc.models(maker, model)
        if not found:
            close = difflib.get_close_matches(f"{maker} {model}", doc.names(), n=5, cutoff=0.5)
            raise InputError(
                f"{where}: camera {maker!r} {model!r} not found in {path}"
                + (f"; closest: {', '.join(close)}" if close else "")
            )
        rows = []
        for p in found[-1].used:  # the last entry of the camera, as darktable takes it
            a, b = np.asarray(p.a, float), np.asarray(p.b, float)
            require(
                a.shape == (channels,) and b.shape == (channels,),
                f"{path}: {maker} {model} ISO {p.iso}: expected {channels} values of a and b",
            )
            if (b < 0).any():
                msg = (
                    f"{path}: {maker} {model} ISO {p.iso} has negative b = "
                    f"{b.tolist()} (variance a·x + b < 0 in the shadows)"
                )
                if negative_b == "error":
                    raise InputError(msg + f"; set {where}.negative_b=clamp to clamp it to 0")
                log.warning("%s; clamped to 0", msg)
                b = np.maximum(b, 0.0)
            rows.append((float(p.iso), a, b))
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
        a, b = at_iso(iso, self.isos, self.a), at_iso(iso, self.isos, self.b)
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
        a, b = at_iso(iso, self.isos, self.a), at_iso(iso, self.isos, self.b)
        return a, b


SENSORS = Registry("sensor")


def _given(v):
    check(v is not None, "is missing from the sensor config")
    return v


Given = Annotated[Any, AfterValidator(_given)]
"""A required value (null is missing); its model class checks what it is."""


class RawSensor(NoiseKeys):
    """``kind: raw`` (``conf/sensor/generic_aps_c.yaml``)."""

    kind: Literal["raw"]
    name: Text = "sensor"
    k0: Given
    k1: Given
    ob: Given
    white: Given
    iso: Given


class DarktableSensor(NoiseKeys):
    """``kind: darktable`` (``conf/sensor/darktable.yaml``)."""

    kind: Literal["darktable"]
    name: Text | None = None  # not read: the camera's maker and model name it
    profile: Given
    maker: Given
    model: Given
    iso: Given
    ob: Given = 0.0
    white: Given = 1.0
    negative_b: Any = "clamp"


class TableSensor(NoiseKeys):
    """``kind: table`` (the ``sensor.yaml`` of ``residual-train calibrate noise``)."""

    kind: Literal["table"]
    name: Text = "calibrated"
    planes: Any = None  # the planes of a and b's columns (R, Gr, Gb, B), for the reader
    isos: Given
    a: Given
    b: Given
    ob: Given
    white: Given
    iso: Any = None  # null: the table's ISOs


@SENSORS.register("raw")
def _raw(cfg: dict, channels: int, where: str) -> tuple[RawNoiseModel, NoiseKeys]:
    s = parse(RawSensor, cfg, where)
    return RawNoiseModel(s.k0, s.k1, s.ob, s.white, s.iso, channels, s.name, where), s


@SENSORS.register("darktable")
def _darktable(cfg: dict, channels: int, where: str) -> tuple[DarktableNoiseModel, NoiseKeys]:
    s = parse(DarktableSensor, cfg, where)
    return DarktableNoiseModel(
        s.profile, s.maker, s.model, s.iso, s.ob, s.white, s.negative_b, channels, where
    ), s


@SENSORS.register("table")
def _table(cfg: dict, channels: int, where: str) -> tuple[TableNoiseModel, NoiseKeys]:
    s = parse(TableSensor, cfg, where)
    return TableNoiseModel(s.isos, s.a, s.b, s.ob, s.white, s.iso, channels, s.name, where), s


def build_sensor(cfg: dict, channels: int = 3, where: str = "sensor") -> SensorModel:
    """Sensor model from a plain config dict (``kind`` names the builder in :data:`SENSORS`;
    a missing kind is ``raw``), with the noise kind ``noise`` names (default
    ``poisson_gaussian``; :mod:`data_gen.noise_kinds`)."""
    sensor, keys = SENSORS.build({"kind": "raw", **cfg}, channels, where=where)
    sensor.noise = build_noise_kind(keys, sensor, channels, where)
    return sensor


def noise_table(
    sensor_cfg: dict | None, channels: int, points: int = 17, layout: str = "rgb"
) -> dict | None:
    """The sensor's ``σ²(v) = a·v + b`` as the table a model card holds (``iso``, rows of
    ``a`` and ``b`` per ISO, ``ob``, ``white``, ``source``): the sensor's ISO values and
    knots and ``points`` geometric steps over its range; a, b are linear in ISO between
    them (exactly so for the raw model), read back by :func:`data_gen.noise.at_iso`.
    ``layout='rggb'``: the colour model's values per packed plane R, Gr, Gb, B."""
    if not sensor_cfg:
        return None
    if layout == "rggb":
        from data_gen.cfa import PLANE_COLOUR

        table = noise_table(sensor_cfg, 3, points)
        assert table is not None
        for k in ("a", "b"):
            table[k] = [[row[c] for c in PLANE_COLOUR] for row in table[k]]
        return table
    sensor = build_sensor(sensor_cfg, channels)
    lo, hi = sensor.iso.range
    isos = sorted({*(sensor.iso.values or []), *np.geomspace(lo, hi, points).round(3).tolist()})
    if hasattr(sensor, "isos"):  # darktable: its own knots inside the range
        isos = sorted({*isos, *(float(i) for i in sensor.isos if lo <= i <= hi)})
    rows = [sensor.params(i) for i in isos]
    return {
        "iso": isos,
        "a": [r.a.tolist() for r in rows],
        "b": [r.b.tolist() for r in rows],
        "ob": sensor.ob,
        "white": sensor.white,
        "source": sensor_cfg,
    }
