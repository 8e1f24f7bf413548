"""``sensor.noise=dark_frames``: the signal-independent noise sampled from the camera's own
dark frames (SFRN; "Noise Modeling in One Hour", docs/design.md §10), plus the shot noise:

    n = √(A·max(s, 0))·r  +  (F_j[crop] − black − D[crop]) / span

``F_j`` one of the calibration's dark frames of the sample's ISO, cropped in packed Bayer
planes (pattern-aligned: plane R of the frame is plane R of the patch; RGB takes the R, Gr
and B planes) at a uniformly drawn position; ``black`` its calibrated dark level and ``D``
the dark shading (the fixed pattern, left to the shading correction a deployment applies,
as in One-Hour). Everything a dark frame holds beyond that — read noise of whatever shape,
row noise, black-level jitter, the frames' own rounding, pixel-level fixed pattern, hot
pixels — is in the sample as measured.

Needs ``sensor.dark`` (a calibration's dark.json with its frames) and a sensor that draws
only ISOs the dark frames were taken at. ``B`` is the measured mean square of the
frames' signal-independent part over the photosites that are not bad pixels.
"""

from __future__ import annotations

import numpy as np

from data_gen.cfa import pack
from data_gen.core.errors import require
from data_gen.core.typed import Integer, Settings, parse
from data_gen.noise import at_iso
from data_gen.noise_kinds import register
from data_gen.noise_kinds.base import NoiseContext, NoiseKeys, NoiseKind
from data_gen.noise_kinds.calibration import DarkCalibration, DarkISO
from data_gen.noise_kinds.tables import planes_to_colours


class DarkFramesSettings(Settings):
    max_frames: Integer | None = None  # at most this many frames per ISO (None: all)


def _plane_mask(
    bad: list[tuple[int, int]], shape: tuple[int, int, int], pattern: str
) -> np.ndarray:
    """Bad photosites ``[row, column]`` of the mosaic as a packed ``(4, h, w)`` bool mask."""
    mosaic = np.zeros((2 * shape[1], 2 * shape[2]), bool)
    if bad:
        rc = np.asarray(bad, np.int64)
        ok = (rc[:, 0] < mosaic.shape[0]) & (rc[:, 1] < mosaic.shape[1])
        mosaic[rc[ok, 0], rc[ok, 1]] = True
    return pack(mosaic, pattern)


@register
class DarkFrames(NoiseKind):
    name = "dark_frames"
    orientation_free = False  # the dark frames' rows, columns and fixed pattern
    keys = ("dark_frames", "dark")

    @classmethod
    def build(cls, keys: NoiseKeys, sensor, channels: int, where: str) -> DarkFrames:
        s = parse(DarkFramesSettings, keys.dark_frames, f"{where}.dark_frames")
        require(
            bool(keys.dark),
            f"{where}.noise = dark_frames needs {where}.dark: the dark.json of "
            "residual-train calibrate noise (ten or more dark frames per ISO)",
        )
        return cls(s, DarkCalibration(keys.dark, f"{where}.dark"), sensor, channels, where)

    def __init__(self, s: DarkFramesSettings, dark: DarkCalibration, sensor, channels: int,
                 where: str) -> None:  # fmt: skip
        self.settings, self.dark, self.channels = s, dark, channels
        self.span = float(sensor.white - sensor.ob)
        require(
            channels in (1, 3),
            f"{where}.noise = dark_frames: Bayer dark frames serve 1 or 3 channels, not {channels}",
        )
        require(
            s.max_frames is None or s.max_frames >= 1,
            f"{where}.dark_frames.max_frames = {s.max_frames}: at least 1",
        )
        isos = set(dark.isos.tolist())
        wanted = sensor.iso.values
        require(
            wanted is not None and set(wanted) <= isos,
            f"{where}.iso = {wanted if wanted is not None else list(sensor.iso.range)}: with "
            f"noise = dark_frames the sensor draws only ISOs its dark frames were taken at "
            f"({sorted(isos)}); list them, e.g. {where}.iso=[{sorted(isos)[0]:g}]",
        )
        for e in dark.entries:
            missing = [p for p in e.frame_paths if not p.is_file()]
            require(
                not missing and bool(e.frame_paths),
                f"{where}.dark: dark frame {missing[0] if missing else '(none listed)'} of ISO "
                f"{e.iso:g} is missing (dark.json lists the frames the calibration used)",
            )
        self._frames: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self._ms: dict[float, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"DarkFrames({self.dark.path}, {self.settings!r})"

    def _entry(self, iso: float) -> DarkISO:
        return self.dark.entries[int(np.flatnonzero(self.dark.isos == iso)[0])]

    def frames(self, iso: float) -> tuple[np.ndarray, np.ndarray]:
        """The ISO's signal-independent parts ``(N, 4, h, w)`` float32, DN minus black minus
        shading, and the bad-pixel mask ``(4, h, w)`` (loaded once)."""
        if iso not in self._frames:
            from data_gen.raw import read_raw

            e = self._entry(iso)
            paths = e.frame_paths[: self.settings.max_frames]
            shading = e.shading()
            out, pattern = [], None
            for p in paths:
                r = read_raw(p)
                pattern = r.pattern
                planes = pack(r.mosaic, r.pattern).astype(np.float32)
                require(
                    planes.shape == shading.shape,
                    f"sensor.dark: {p} is {planes.shape} planes, the shading {shading.shape}",
                )
                out.append(planes - e.black[:, None, None].astype(np.float32) - shading)
            mask = _plane_mask(e.bad, shading.shape, pattern)
            self._frames[iso] = (np.stack(out), mask)
        return self._frames[iso]

    def measured_variance(self, iso: float) -> np.ndarray:
        """Mean square per plane ``(4,)`` DN² of the frames' signal-independent part at one
        of their ISOs, bad pixels left out (computed once)."""
        if iso not in self._ms:
            f, bad = self.frames(iso)
            good = ~bad
            self._ms[iso] = np.array(
                [float((f[:, p][:, good[p]].astype(np.float64) ** 2).mean()) for p in range(4)]
            )
        return self._ms[iso]

    def total_variance(self, iso: float, b: np.ndarray) -> np.ndarray:
        """Measured at the frames' ISOs; linear in ISO between them (a model card's table
        asks for ISOs in between; samples are only drawn at the frames' ISOs)."""
        isos = self.dark.isos
        ms = np.stack([self.measured_variance(float(i)) for i in isos])  # (n_iso, 4)
        ms = at_iso(iso, isos, ms) / self.span**2
        return planes_to_colours(ms, self.channels, "dark") if self.channels == 3 else ms[:1]

    def meta_fields(self, stored_channels: int) -> list[tuple]:
        return [("noise_dark_frame", "<i4"), ("noise_dark_yx", "<i4", (2,))]

    def draw(self, rng: np.random.Generator, ctx: NoiseContext) -> tuple[dict, dict]:
        """The frame index, then the crop's top-left (plane pixels), uniformly."""
        f, _ = self.frames(ctx.iso)
        _, hs, ws = ctx.stored
        n, _, h, w = f.shape
        require(
            h >= hs and w >= ws,
            f"sensor.dark: the dark frames ({h}x{w} plane px) are smaller than a patch ({hs}x{ws})",
        )
        j = int(rng.integers(n))
        r, c = int(rng.integers(h - hs + 1)), int(rng.integers(w - ws + 1))
        crop = f[j, ctx.plane, r : r + hs, c : c + ws] / np.float32(self.span)
        return {"dark": crop.astype(np.float32)}, {"noise_dark_frame": j, "noise_dark_yx": (r, c)}

    def sample(self, signal, model, normal, draws):
        return model.shot(signal) * normal + draws["dark"]
