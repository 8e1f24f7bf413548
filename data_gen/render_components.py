"""Rendering of schema-v2 samples: any list of components (:mod:`data_gen.chain`) on a patch.

A sample first draws what a two-component sample draws (:func:`data_gen.render.draw_sample`:
crop, exposure, ISO, PSF; the crop keeps :meth:`ComponentSettings.margin` pixels of the
frame on every side),
then, from the same generator and in physical order, each component's parameters
(:func:`draw_params`), then the standard normals of its noise. The chain runs on the patch
and its margin (the support of the blurs) and every output is trimmed to the patch before
the noise is added (:func:`data_gen.chain.render_chain`); stored patches are clipped at the
white level, as schema v1's are.

Stored per sample (``(C, P, P)`` float32, linear): ``input``, ``clean``, ``without_<c>`` for
every component and ``before_<c>`` for every component that is neither the first (its
``before`` is ``clean``) nor noise (its ``before`` is ``without_noise``), so that both the
leave-one-out and the peeling residuals of :func:`data_gen.chain.residuals` can be formed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from data_gen import components as cp
from data_gen.chain import NEEDS_DEPTH, check_components, render_chain
from data_gen.errors import require
from data_gen.noise import NoiseModel
from data_gen.render import PATCHES, SampleSpec
from data_gen.sources import Frame

V1_COMPONENTS = ("blur", "noise")


def stored_names(components: Sequence[str]) -> list[str]:
    """The patch datasets a shard of ``components`` stores, in storage order: schema v1's
    four for blur and noise, else schema v2's."""
    names = check_components(components)
    if names == V1_COMPONENTS:
        return list(PATCHES)
    extra = [f"before_{c}" for c in names[1:] if c != "noise"]
    return ["input", "clean", *(f"without_{c}" for c in names), *extra]


def _pair(settings: Mapping, key: str, where: str, low: float, strict: bool) -> tuple[float, float]:
    v = settings.get(key)
    ok = isinstance(v, (list, tuple)) and len(v) == 2
    if ok:
        try:
            lo, hi = float(v[0]), float(v[1])
        except (TypeError, ValueError):
            ok = False
    require(ok, f"{where}.{key} = {v!r}: give a range [min, max] of numbers")
    sign = ">" if strict else ">="
    require(
        math.isfinite(lo) and math.isfinite(hi) and lo <= hi,
        f"{where}.{key} = {[lo, hi]}: need min <= max, both finite",
    )
    require(lo > low if strict else lo >= low, f"{where}.{key} = {[lo, hi]}: need min {sign} {low}")
    return lo, hi


def _number(settings: Mapping, key: str, where: str, low: float, strict: bool = True) -> float:
    v = settings.get(key)
    require(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        f"{where}.{key} = {v!r}: give a number",
    )
    require(
        v > low if strict else v >= low,
        f"{where}.{key} = {v}: must be {'>' if strict else '>='} {low}",
    )
    return float(v)


@dataclass
class ComponentSettings:
    """The checked settings of the components a dataset renders (``conf/component/``)."""

    components: tuple[str, ...]
    relight: dict
    fog: dict
    defocus: dict
    motion: dict
    kernels: dict[str, np.ndarray] | None = None  # motion.source = file

    @classmethod
    def build(cls, components: Sequence[str], settings: Mapping | None) -> ComponentSettings:
        """Check every active component's settings; one line names a bad key and value."""
        names = check_components(components)
        settings = dict(settings or {})
        out = {}
        for c in ("relight", "fog", "defocus", "motion"):
            s = dict(settings.get(c) or {})
            w = f"component.{c}"
            if c not in names:
                out[c] = s
                continue
            if c == "relight":
                lights = s.get("lights")
                require(
                    isinstance(lights, (list, tuple))
                    and len(lights) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in lights)
                    and 0 <= lights[0] <= lights[1],
                    f"{w}.lights = {lights!r}: a range [min, max] of counts, 0 <= min <= max",
                )
                s["lights"] = (int(lights[0]), int(lights[1]))
                s["ambient"] = _pair(s, "ambient", w, 0.0, strict=True)  # the gain is > 0
                s["amplitude"] = _pair(s, "amplitude", w, 0.0, strict=False)
                s["width"] = _pair(s, "width", w, 0.0, strict=True)
            elif c == "fog":
                s["beta"] = _pair(s, "beta", w, 0.0, strict=False)  # β >= 0
                s["airlight"] = _pair(s, "airlight", w, 0.0, strict=True)
                s["tint"] = _number(s, "tint", w, 0.0, strict=False)
                require(s["tint"] < 1, f"{w}.tint = {s['tint']}: must be < 1")
            elif c == "defocus":
                s["focal_mm"] = _number(s, "focal_mm", w, 0.0)
                s["f_number"] = _pair(s, "f_number", w, 0.0, strict=True)
                s["pixel_um"] = _number(s, "pixel_um", w, 0.0)
                s["focus"] = _pair(s, "focus", w, 0.0, strict=False)
                require(s["focus"][1] <= 1, f"{w}.focus = {list(s['focus'])}: quantiles in [0, 1]")
                s["max_radius_px"] = _number(s, "max_radius_px", w, 0.0, strict=False)
                layers = s.get("layers")
                require(
                    isinstance(layers, int) and not isinstance(layers, bool) and layers >= 1,
                    f"{w}.layers = {layers!r}: an integer >= 1",
                )
            else:
                src = s.get("source", "random")
                require(src in ("random", "file"), f"{w}.source = {src!r}: random or file")
                s["length"] = _pair(s, "length", w, 0.0, strict=True)
                s["steps"] = s.get("steps", 256)
                require(
                    isinstance(s["steps"], int)
                    and not isinstance(s["steps"], bool)
                    and s["steps"] >= 2,
                    f"{w}.steps = {s['steps']!r}: an integer >= 2",
                )
            out[c] = s
        kernels = None
        if "motion" in names and out["motion"].get("source") == "file":
            path = out["motion"].get("kernels")
            require(
                path not in (None, ""),
                "component.motion.source = file: give component.motion.kernels=FILE.npz",
            )
            kernels = cp.load_kernels(str(path))
            require(bool(kernels), f"component.motion.kernels = {path}: the file holds no kernel")
        return cls(names, out["relight"], out["fog"], out["defocus"], out["motion"], kernels)

    @property
    def motion_half(self) -> int:
        """Half the side of the largest motion kernel, pixels."""
        if self.kernels is not None:
            return max(max(k.shape) for k in self.kernels.values()) // 2
        # trajectory_kernel: side 2·ceil(extent) + 3, extent <= length from the centroid
        return math.ceil(self.motion["length"][1]) + 1

    def margin(self, lens_size: int) -> int:
        """Pixels of frame a patch needs on every side: the sum of the blurs' radii."""
        m = 0
        if "blur" in self.components:
            m += lens_size // 2
        if "defocus" in self.components:
            m += math.ceil(self.defocus["max_radius_px"]) + 1
        if "motion" in self.components:
            m += self.motion_half
        return m


def meta_fields(s: ComponentSettings, channels: int) -> list[tuple]:
    """The ``meta`` fields a schema-v2 sample adds: each active component's parameters."""
    f: list[tuple] = []
    if "relight" in s.components:
        f += [
            ("relight_ambient", "<f4"),
            ("relight_lights", "<f4", (max(1, s.relight["lights"][1]), 4)),
        ]
    if "fog" in s.components:
        f += [("fog_beta", "<f4"), ("fog_airlight", "<f4", (channels,))]
    if "defocus" in s.components:
        f += [("defocus_focus_m", "<f4"), ("defocus_f_number", "<f4")]
    if "motion" in s.components:
        k = 2 * s.motion_half + 1
        f += [("motion_length", "<f4"), ("motion_index", "<i4"), ("motion_kernel", "<f4", (k, k))]
    return f


def draw_params(
    rng: np.random.Generator,
    s: ComponentSettings,
    frame_hw: tuple[int, int],
    window: tuple[int, int, int, int],
    depth: np.ndarray | None,
    psf: np.ndarray,
    channels: int,
) -> tuple[dict, dict]:
    """Each active component's parameters in physical order from ``rng``: ``(params,
    record)`` — ``params`` as :func:`data_gen.chain.apply` takes them (maps over the
    ``window`` = (top, left, height, width) of a frame of ``frame_hw`` pixels), ``record``
    the ``meta`` values."""
    top, left, h, w = window
    params: dict = {}
    rec: dict = {}
    for c in s.components:
        if c == "relight":
            r = s.relight
            d = cp.draw_relight(rng, r["lights"], r["ambient"], r["amplitude"], r["width"])
            g = cp.gain_map((h, w), d["ambient"], d["lights"], frame_hw, (top, left))
            params[c] = {"gain": g}
            rows = np.zeros((max(1, r["lights"][1]), 4), np.float32)
            rows[:, 2] = 1.0  # unused rows: lights of amplitude 0 (no gain)
            rows[: len(d["lights"])] = d["lights"]
            rec.update(relight_ambient=d["ambient"], relight_lights=rows)
        elif c == "fog":
            f = s.fog
            d = cp.draw_fog(rng, f["beta"], f["airlight"], f["tint"], channels)
            params[c] = d
            rec.update(fog_beta=d["beta"], fog_airlight=d["airlight"])
        elif c == "defocus":
            f = s.defocus
            lo, hi = f["f_number"]
            n = float(np.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo
            q = float(rng.uniform(*f["focus"]))
            focus = max(float(np.quantile(depth, q)), 2e-3 * f["focal_mm"])
            radius = cp.coc_radius_px(depth, focus, f["focal_mm"], n, f["pixel_um"])
            radius = np.minimum(radius, f["max_radius_px"])
            params[c] = {"radius": radius, "layers": int(f["layers"])}
            rec.update(defocus_focus_m=focus, defocus_f_number=n)
        elif c == "blur":
            params[c] = {"psf": psf}
        elif c == "motion":
            side = 2 * s.motion_half + 1
            if s.kernels is not None:
                names = sorted(s.kernels)
                i = int(rng.integers(len(names)))
                k, length = s.kernels[names[i]], math.nan
            else:
                d = cp.draw_motion(rng, s.motion["length"], s.motion["steps"])
                i, k, length = -1, d["kernel"], d["length"]
            padded = np.zeros((side, side), np.float32)
            ky, kx = k.shape
            oy, ox = (side - ky) // 2, (side - kx) // 2
            padded[oy : oy + ky, ox : ox + kx] = k
            params[c] = {"kernel": padded}
            rec.update(motion_length=length, motion_index=i, motion_kernel=padded)
    return params, rec


def _render_window(
    scene: np.ndarray,
    depth: np.ndarray | None,
    name: str,
    s: ComponentSettings,
    frame_hw: tuple[int, int],
    origin: tuple[int, int],
    psf: np.ndarray,
    noise: NoiseModel,
    rng: np.random.Generator,
    margin: int,
) -> tuple[dict[str, np.ndarray], dict]:
    """The chain on ``scene`` ``(C, H, W)`` (with its ``depth``), a window of image ``name``
    (a frame of ``frame_hw`` pixels) whose top-left pixel is ``origin``: every
    :func:`stored_names` array ``(C, H − 2·margin, W − 2·margin)``, clipped at white, and
    the drawn parameters' ``meta`` values. Draws, in order: the components' parameters,
    then the noise normals."""
    for c in s.components:
        require(
            c not in NEEDS_DEPTH or depth is not None,
            f"component {c} needs a depth map, and image {name} has none",
        )
    ch, h, w = scene.shape
    params, rec = draw_params(rng, s, frame_hw, (*origin, h, w), depth, psf, ch)
    normal = rng.standard_normal((ch, h - 2 * margin, w - 2 * margin), dtype=np.float32)
    t = render_chain(scene, s.components, params, depth, noise, normal, margin)
    return {k: np.minimum(t[k], np.float32(1)) for k in stored_names(s.components)}, rec


def render_sample(
    spec: SampleSpec, s: ComponentSettings, psf: np.ndarray, patch: int, margin: int
) -> tuple[dict[str, np.ndarray], dict]:
    """One sample's stored patches (:func:`stored_names`) and its components' ``meta``
    values; ``psf`` ``(C, K, K)`` the lens PSF drawn for it."""
    fr = spec.frame
    y0, x0 = spec.y - margin, spec.x - margin
    side = patch + 2 * margin
    scene = fr.pixels[:, y0 : y0 + side, x0 : x0 + side] * np.float32(spec.exposure)
    depth = None if fr.depth is None else fr.depth[y0 : y0 + side, x0 : x0 + side]
    hw = fr.pixels.shape[1:]
    return _render_window(
        scene, depth, fr.name, s, hw, (y0, x0), psf, spec.noise.model, spec.rng, margin
    )


def render_frame(
    frame: Frame,
    s: ComponentSettings,
    psf: np.ndarray,
    noise: NoiseModel,
    rng: np.random.Generator,
    margin: int,
    exposure: float = 1.0,
) -> tuple[dict[str, np.ndarray], dict]:
    """The chain on a whole frame (evaluation on a real photograph with depth), as
    :func:`_render_window`; one lens PSF ``psf`` ``(C, K, K)`` for the frame."""
    scene = frame.pixels * np.float32(exposure)
    h, w = scene.shape[1:]
    require(min(h, w) > 2 * margin, f"frame {frame.name}: {w}x{h} px, the margin is {margin} px")
    return _render_window(
        scene, frame.depth, frame.name, s, (h, w), (0, 0), psf, noise, rng, margin
    )
