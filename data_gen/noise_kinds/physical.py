"""``sensor.noise=physical``: the signal-independent noise in its physical parts (ELD, PMN;
docs/design.md §10), per ISO, drawn per sample:

    n = √(A·max(s, 0))·r  +  σ_read·Q_λ(u)/sd(λ)  +  σ_row·z_row  +  σ_black·z  +  D,
    then the sensor's output s + n rounded to whole DN

* shot noise: the Gaussian approximation of the Poisson part, the model's ``A``;
* read noise: Tukey-λ of shape ``λ`` (``tukey_lambda``; 0.14 ≈ normal, smaller = longer
  tails), by its quantile function on per-photosite uniforms ``u``;
* row noise: one standard normal per sensor row of the patch (``row_sigma_dn``; R and Gr
  of packed planes share their sensor row, Gb and B the next);
* black-level error: one offset per sample and channel (``black_error_dn``);
* dark shading ``D``: the fixed dark pattern cropped at the patch's position (the
  calibration's maps, or a synthetic pattern of std ``shading_dn``);
* quantisation to whole DN (``quantise``; ``ob``/``white`` of the sensor).

The sensor's ``b`` (``k0`` or a calibrated table) is the *temporal* signal-independent
variance — what photon transfer and dark frames measure: read, row, black jitter and
rounding together. This kind splits it: ``σ_read² = b·span² − σ_row² − σ_black² − 1/12``
(refused when negative), and adds the dark shading's mean square, so the total it reports,
``B = b + mean(D²)/span²``, is what the noise of a sample has. With ``sensor.dark`` (a
calibration's dark.json) the parts not given in ``sensor.physical`` come from it.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Strict

from data_gen.core.errors import require
from data_gen.core.typed import Integer, Number, Settings, parse
from data_gen.noise_kinds import register
from data_gen.noise_kinds.base import NoiseContext, NoiseKeys, NoiseKind
from data_gen.noise_kinds.calibration import DarkCalibration
from data_gen.noise_kinds.tables import ISOTable, bracket, check_isos, planes_to_colours
from data_gen.physics.sensor_noise import (
    crop_position,
    quantised,
    row_field,
    synthetic_shading,
    tukey_lambda_quantile,
    tukey_lambda_std,
)

QUANTISATION = 1 / 12  # DN², the variance rounding to whole DN adds
MIN_LAMBDA = -0.4  # Tukey-λ has a finite variance for λ > −1/2; keep away from it

PerIso = Number | list[Number | list[Number]]
Flag = Annotated[bool, Strict()]


class PhysicalSettings(Settings):
    isos: list[Number] | None = None  # the ISOs of per-ISO entries
    row_sigma_dn: PerIso | None = None  # σ of the row offsets, DN
    tukey_lambda: PerIso | None = None  # read-noise shape
    black_error_dn: PerIso | None = None  # σ of the per-sample black-level offset, DN
    shading_dn: PerIso | None = None  # std of the synthetic dark shading, DN (no calibration)
    shading_size: tuple[Integer, Integer] = (512, 768)  # its map, plane pixels (h, w)
    shading_seed: Integer = 0
    shading: Flag = True  # add the dark shading (calibrated maps, or synthetic)
    quantise: Flag = True  # round the noisy signal to whole DN


class _Shading:
    """Dark-shading maps per ISO: ``maps(i)`` ``(4, h, w)`` DN at ``isos[i]``, linear in ISO
    between them; mean squares per plane for ``B``."""

    def __init__(self, isos: np.ndarray | None, maps, scale: ISOTable | None = None) -> None:
        self.isos, self._maps, self.scale = isos, maps, scale
        self._ms: dict[tuple[int, int], np.ndarray] = {}

    def weights(self, iso: float) -> list[tuple[int, float]]:
        if self.scale is not None:  # one unit pattern times a per-ISO amplitude (per plane)
            return [(0, 1.0)]
        i0, i1, w = bracket(iso, self.isos)
        return [(i0, 1 - w), (i1, w)] if w > 0 else [(i0, 1.0)]

    def amplitude(self, iso: float) -> np.ndarray:
        """Per-plane factor ``(4,)`` on the maps (1 for calibrated maps)."""
        if self.scale is None:
            return np.ones(4)
        a = self.scale.at(iso)
        return np.array([a[0], a[1], a[1], a[2]]) if a.size == 3 else np.repeat(a[:1], 4)

    def hw(self) -> tuple[int, int]:
        return tuple(self._maps(0).shape[1:])

    def mean_square(self, iso: float) -> np.ndarray:
        """Mean over each plane of the map's square at ``iso``, ``(4,)`` DN²."""
        ws = self.weights(iso)
        out = np.zeros(4)
        for i, wi in ws:
            for j, wj in ws:
                key = (min(i, j), max(i, j))
                if key not in self._ms:
                    a, b = self._maps(key[0]).astype(np.float64), self._maps(key[1])
                    self._ms[key] = (a * b).mean(axis=(1, 2))
                out += wi * wj * self._ms[key]
        return out * self.amplitude(iso) ** 2

    def crop(self, iso: float, planes: list[int], r: int, c: int, h: int, w: int) -> np.ndarray:
        """``(len(planes), h, w)`` float64 DN at ``(r, c)``."""
        out = 0.0
        for i, wi in self.weights(iso):
            out = out + wi * self._maps(i)[planes, r : r + h, c : c + w].astype(np.float64)
        return out * self.amplitude(iso)[planes][:, None, None]


@register
class Physical(NoiseKind):
    name = "physical"
    orientation_free = False  # row noise and dark shading at the photosite's position
    keys = ("physical", "dark")
    fields = ("uniform",)

    @classmethod
    def build(cls, keys: NoiseKeys, sensor, channels: int, where: str) -> Physical:
        s = parse(PhysicalSettings, keys.physical, f"{where}.physical")
        dark = DarkCalibration(keys.dark, f"{where}.dark") if keys.dark else None
        return cls(s, dark, sensor, channels, where)

    def __init__(self, s: PhysicalSettings, dark: DarkCalibration | None, sensor,
                 channels: int, where: str) -> None:  # fmt: skip
        self.settings, self.channels, self.sensor = s, channels, sensor
        self.ob, self.span = float(sensor.ob), float(sensor.white - sensor.ob)
        self.quantise = s.quantise
        self.q = QUANTISATION if s.quantise else 0.0
        w = f"{where}.physical"
        isos = check_isos(s.isos, f"{w}.isos")

        def table(key: str, from_dark: np.ndarray | None, default: float) -> ISOTable:
            v = getattr(s, key)
            if v is not None:
                return ISOTable.parse(v, None if isos is None else isos.tolist(), channels,
                                      f"{w}.{key}")  # fmt: skip
            if from_dark is not None:
                return ISOTable(dark.isos, planes_to_colours(from_dark, channels, f"{where}.dark"),
                                f"{where}.dark")  # fmt: skip
            return ISOTable(None, np.full((1, channels), default), f"{w}.{key}")

        ble_d = row_d = lam_d = None
        if dark is not None:
            ble_d = dark.table("black_frame_std")
            # the row means of a frame also move with its black level: take that out
            row_d = np.sqrt(np.maximum(dark.table("row_sigma") ** 2 - ble_d**2, 0))
            lam_d = dark.table("tukey_lambda")
        self.row = table("row_sigma_dn", row_d, 0.0)
        self.ble = table("black_error_dn", ble_d, 0.0)
        self.lam = table("tukey_lambda", lam_d, 0.14)
        for t in (self.row, self.ble):
            require(bool((t.values >= 0).all()), f"{t.where} = {t.values.tolist()}: must be >= 0")
        bad = self.lam.values[self.lam.values <= MIN_LAMBDA]
        require(
            bad.size == 0,
            f"{self.lam.where} = {self.lam.values.tolist()}: Tukey-λ must be > {MIN_LAMBDA} "
            "(its variance is infinite at −1/2)",
        )
        self.shading = None
        if s.shading and dark is not None:
            self.shading = _Shading(dark.isos, lambda i: dark.entries[i].shading())
        elif s.shading and s.shading_dn is not None:
            amp = ISOTable.parse(s.shading_dn, None if isos is None else isos.tolist(),
                                 channels, f"{w}.shading_dn")  # fmt: skip
            require(bool((amp.values >= 0).all()), f"{w}.shading_dn: must be >= 0")
            h, wd = s.shading_size
            require(h >= 8 and wd >= 8, f"{w}.shading_size = {[h, wd]}: at least 8 x 8")
            unit = synthetic_shading((h, wd), s.shading_seed)
            self.shading = _Shading(None, lambda i: unit, amp)
        if self.shading is not None:
            require(
                channels in (1, 3),
                f"{w}.shading: a dark shading is per Bayer plane; the sensor has {channels} "
                "channels (set physical.shading=false)",
            )
        self._check(sensor, where)

    def _check(self, sensor, where: str) -> None:
        """Every part's table covers the sensor's ISOs, and the parts fit in its ``b``."""
        lo, hi = sensor.iso.range
        tables = [self.row, self.ble, self.lam]
        if self.shading is not None and self.shading.scale is not None:
            tables.append(self.shading.scale)
        for t in tables:
            t.check_covers(lo, hi, t.where)
        if self.shading is not None and self.shading.isos is not None:
            isos = self.shading.isos
            require(
                lo >= isos[0] and hi <= isos[-1],
                f"{where}.dark: the sensor draws ISO {lo:g}..{hi:g} but the dark frames cover "
                f"ISO {isos[0]:g}..{isos[-1]:g}",
            )
        if sensor.iso.values is not None:
            points = sorted(set(sensor.iso.values))
        else:  # each part is linear in ISO between knots: the remainder is concave there
            knots = [k for t in tables for k in t.knots] + list(getattr(sensor, "isos", []))
            points = sorted({lo, hi, *(float(k) for k in knots if lo <= k <= hi)})
        for iso in points:
            b = np.asarray(sensor.ab(iso)[1], np.float64) * self.span**2
            rest = self.row.at(iso) ** 2 + self.ble.at(iso) ** 2 + self.q
            short = np.flatnonzero(b - rest < 0)
            require(
                short.size == 0,
                f"{self.row.where}: at ISO {iso:g} the row ({self.row.at(iso).tolist()} DN), "
                f"black-level ({self.ble.at(iso).tolist()} DN) and rounding (1/12 DN²) "
                f"variances exceed the sensor's signal-independent variance "
                f"{b.tolist()} DN² (k0 / b): lower them",
            )

    def __repr__(self) -> str:
        return f"Physical({self.settings!r})"

    # ---- per ISO --------------------------------------------------------------------
    def read_sigma(self, iso: float) -> np.ndarray:
        """σ of the read noise per colour (DN): the rest of the sensor's temporal variance."""
        b = np.asarray(self.sensor.ab(iso)[1], np.float64)
        rest = self.row.at(iso) ** 2 + self.ble.at(iso) ** 2 + self.q
        return np.sqrt(np.maximum(b * self.span**2 - rest, 0))

    def shading_mean_square(self, iso: float) -> np.ndarray:
        """Mean square of the dark shading per colour (DN²; 0 without one)."""
        if self.shading is None:
            return np.zeros(self.channels)
        ms = self.shading.mean_square(iso)
        return planes_to_colours(ms, self.channels, "shading") if self.channels == 3 else ms[:1]

    def total_variance(self, iso: float, b: np.ndarray) -> np.ndarray:
        return np.asarray(b, np.float64) + self.shading_mean_square(iso) / self.span**2

    # ---- per sample -------------------------------------------------------------------
    def meta_fields(self, stored_channels: int) -> list[tuple]:
        c = stored_channels
        return [
            ("noise_read_dn", "<f4", (c,)),
            ("noise_lambda", "<f4", (c,)),
            ("noise_row_dn", "<f4", (c,)),
            ("noise_black_dn", "<f4", (c,)),
            ("noise_shading_yx", "<i4", (2,)),
        ]

    def draw(self, rng: np.random.Generator, ctx: NoiseContext) -> tuple[dict, dict]:
        """Row normals ``(H,)`` (photosite rows), then black-level normals ``(C',)``; the
        shading crop at the patch's position."""
        iso, col = ctx.iso, ctx.colour
        cs, hs, ws = ctx.stored
        row, lam = self.row.at(iso)[col], self.lam.at(iso)[col]
        ble, read = self.ble.at(iso)[col], self.read_sigma(iso)[col]
        z_row = rng.standard_normal(ctx.hw[0])
        z_black = rng.standard_normal(cs)
        dy, step = ctx.row_layout
        offset = ble * z_black
        sd = np.array([tukey_lambda_std(float(v)) for v in lam])
        draws = {
            "read": (read / sd / self.span).astype(np.float32),
            "lam": lam.astype(np.float32),
            "row": row_field(z_row, dy, step, hs) * (row / self.span)[:, None].astype(np.float32),
            "offset": (offset / self.span).astype(np.float32),
        }
        pos = (-1, -1)
        if self.shading is not None:
            mh, mw = self.shading.hw()
            require(
                mh >= hs and mw >= ws,
                f"sensor.physical: the dark shading map ({mh}x{mw} plane px) is smaller than "
                f"a patch ({hs}x{ws})",
            )
            pos = crop_position(ctx.y, ctx.x, ctx.hw, ctx.frame_hw, (mh, mw), (hs, ws))
            crop = self.shading.crop(iso, ctx.plane, *pos, hs, ws)
            draws["shading"] = (crop / self.span).astype(np.float32)
        record = {
            "noise_read_dn": read,
            "noise_lambda": lam,
            "noise_row_dn": row,
            "noise_black_dn": offset,
            "noise_shading_yx": pos,
        }
        return draws, record

    def sample(self, signal, model, normal, draws):
        n = model.shot(signal) * normal
        tl = tukey_lambda_quantile(draws["uniform"], draws["lam"][..., None, None])
        n = n + draws["read"][..., None, None] * tl
        n = n + draws["row"][..., None] + draws["offset"][..., None, None]
        if "shading" in draws:
            n = n + draws["shading"]
        if self.quantise:
            n = quantised(signal, n, self.ob, self.span)
        return n
