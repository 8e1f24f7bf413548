"""Files in and out of deployment: an input image decoded to linear ``(C, H, W)``, the
check that it lies in the sensor's range, residual maps saved and read back (32-bit float
TIFF and ``maps.json``, read back as :class:`MapsInfo`), and a composed output written as
TIFF, NPY or PNG."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BeforeValidator, Field, ValidationError

from data_gen.core.errors import InputError, require
from data_gen.core.paths import written_atomically
from data_gen.core.typed import Record
from data_gen.noise import NoiseModel
from data_gen.raw import RAW_SUFFIXES
from data_gen.shards import read_mapping
from data_gen.sources import (
    BELOW_BLACK_TOLERANCE,
    check_linearize,
    linear_to_srgb,
    read_image_encoded,
)
from residual_train.typed import Int

# noise reaches below black by a few of its own standard deviations at black (σ(0) = √B);
# a float file's rounding by a little (data_gen.sources.BELOW_BLACK_TOLERANCE) either way
BLACK_SIGMAS = 8.0


def read_input(
    path: str | Path, linearize: bool | str = "auto", channels: int = 3, layout: str = "rgb"
) -> np.ndarray:
    """PNG / JPEG / TIFF (8/16-bit; float TIFF as is) or RAW (demosaiced linearly by LibRaw,
    white level = 1) -> ``(C, H, W)`` float32 linear.

    ``linearize``: ``auto`` decodes 8-bit files from sRGB and takes 16-bit and float ones as
    linear; ``true`` decodes every integer file; ``false`` takes it as linear
    (:func:`data_gen.sources.srgb_encoded`). RAW files are always linear.

    ``layout='rggb'`` (a model trained on Bayer data): a RAW file's own mosaic, black
    subtracted and packed to planes R, Gr, Gb, B ``(4, H/2, W/2)`` whatever its CFA.
    """
    return read_input_encoded(path, linearize, channels, layout)[0]


def read_input_encoded(
    path: str | Path, linearize: bool | str = "auto", channels: int = 3, layout: str = "rgb"
) -> tuple[np.ndarray, str]:
    """:func:`read_input` and the encoding the file was decoded from (``srgb`` or
    ``linear``): what an output for this input is encoded back to for display."""
    p = Path(path)
    require(p.is_file(), f"input = {str(path)!r}: file does not exist")
    check_linearize(linearize)
    if layout == "rggb":
        require(
            p.suffix.lower() in RAW_SUFFIXES,
            f"input = {str(path)!r}: this model takes packed Bayer data (layout rggb); give a "
            f"RAW file ({', '.join(RAW_SUFFIXES)})",
        )
        from data_gen.raw import read_raw

        return np.ascontiguousarray(read_raw(p).packed()), "linear"
    if p.suffix.lower() in RAW_SUFFIXES:
        return _read_raw_rgb(p, channels), "linear"
    try:
        return read_image_encoded(p, linearize=linearize, channels=channels)
    except InputError as e:
        if "channels, expected" in str(e):
            raise InputError(f"{e} (the model's card says {channels} channels)") from None
        raise


def _read_raw_rgb(p: Path, channels: int) -> np.ndarray:
    """A RAW file demosaiced linearly by LibRaw (camera white balance, white level = 1)."""
    import rawpy

    try:
        with rawpy.imread(str(p)) as raw:
            rgb = raw.postprocess(
                gamma=(1, 1),
                no_auto_bright=True,
                output_bps=16,
                use_camera_wb=True,
                user_flip=0,
            )
    except Exception as e:  # LibRaw errors
        raise InputError(f"input = {str(p)!r}: LibRaw cannot read it ({e})") from None
    x = np.moveaxis(rgb.astype(np.float32) / 65535.0, 2, 0)
    require(x.shape[0] == channels, f"{p}: RAW gives {x.shape[0]} channels, model wants {channels}")
    return np.ascontiguousarray(x)


def check_capture(x: np.ndarray, noise: NoiseModel, where: str) -> None:
    """``x`` lies in the sensor's range, as a capture does: linear, 0 = black, 1 = white
    (the sensor clips there), with noise below black by at most :data:`BLACK_SIGMAS`
    σ(0) at the image's ISO. Anything else is another encoding or scale (an offset, a
    float file in 0..255 or 0..65535), refused naming the values found."""
    floor = -max(BELOW_BLACK_TOLERANCE, BLACK_SIGMAS * float(np.sqrt(np.max(noise.B))))
    lo, hi = float(x.min()), float(x.max())
    below = float(np.mean(x < floor))
    require(
        lo >= floor,
        f"{where}: values down to {lo:g} ({below:.0%} of them below {floor:.3g}); a capture is "
        f"linear with 0 = black, and its noise reaches at most {-floor:.3g} below black at "
        "this ISO (an offset or another encoding?)",
    )
    require(
        hi <= 1 + BELOW_BLACK_TOLERANCE,
        f"{where}: values up to {hi:g}; a capture is linear with 1 = white, where the sensor "
        "clips (a float file scaled to 0..255 or 0..65535? divide it by its white level)",
    )


def save_maps(out_dir: Path, x: np.ndarray, maps: dict[str, np.ndarray], meta: dict) -> None:
    """``input.tif``, ``R_<head>.tif`` (32-bit float, lossless) and ``maps.json``, each
    appearing only complete."""
    import tifffile

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, a in {"input": x, **{f"R_{k}": v for k, v in maps.items()}}.items():
        with written_atomically(out_dir / f"{name}.tif") as tmp:
            tifffile.imwrite(tmp, np.moveaxis(a, 0, 2).astype(np.float32), photometric="rgb")
    with written_atomically(out_dir / "maps.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")


def _read_planes(p: Path, d: Path) -> np.ndarray:
    """One saved map ``p`` of the deploy output ``d`` as float32 ``(C, H, W)``."""
    import tifffile

    require(p.is_file(), f"{p}: missing (maps = {str(d)!r} is incomplete)")
    try:
        a = tifffile.imread(p)
    except Exception as e:  # tifffile raises several types for a file that is not a TIFF
        raise InputError(f"{p}: not a readable TIFF ({type(e).__name__}: {e})") from None
    require(
        a.ndim == 3 and np.issubdtype(a.dtype, np.floating),
        f"{p}: expected a float (H, W, C) TIFF, got {a.dtype} of shape {a.shape}",
    )
    require(bool(np.isfinite(a).all()), f"{p}: holds NaN or infinite values")
    return np.ascontiguousarray(np.moveaxis(a, 2, 0).astype(np.float32, copy=False))


def _or(default):
    """A pydantic check: null (and an empty value) stand for ``default``."""
    return BeforeValidator(lambda v: v or default)


class MapsCard(Record):
    """What a recomposition reads of the model card that ``maps.json`` repeats."""

    layout: Annotated[str, _or("rgb")] = "rgb"  # rgb, or packed Bayer planes (rggb)


class MapsInfo(Record):
    """``maps.json`` of a deploy output (what :func:`save_maps` wrote), read once by
    :func:`read_maps`. A key that a file written before it existed lacks takes the
    default here (no correction of distortion, bicubic resampling, RGB data)."""

    components: Annotated[list[str], Field(min_length=1)]  # the saved residual maps
    noise_A: list[float]  # the sensor's noise at the image's ISO, per channel
    noise_B: list[float]
    iso: float | None = None
    model: str | None = None
    input: str | None = None
    input_encoding: str | None = None  # srgb or linear: what the input was decoded from
    card: Annotated[MapsCard, _or({})] = MapsCard()
    distortion: list[float] | None = None  # the radial coefficients the deploy run corrected
    distortion_order: Int() = 3  # its resampling: 1 (bilinear) or 3 (bicubic)


def read_maps_info(path: Path) -> tuple[MapsInfo, dict]:
    """``maps.json`` at ``path``, typed, and as written; one line naming the file and the
    key otherwise."""
    meta = read_mapping(path, "maps description")
    try:
        return MapsInfo.model_validate(meta), meta
    except ValidationError as e:
        err = e.errors()[0]
        loc = err["loc"]
        require(loc[:1] != ("components",), f"{path}: 'components' must list the residual maps")
        key = ".".join(str(p) for p in loc)
        if err["type"] == "missing":
            raise InputError(f"{path}: {key} is missing (not a deploy output?)") from None
        what = err["msg"].removeprefix("Value error, ")
        raise InputError(f"{path}: {key} = {err['input']!r}: {what}") from None


@dataclass(frozen=True)
class SavedMaps:
    """A deploy output read back: the input ``(C, H, W)``, the residual map of each
    component (same shape), ``maps.json`` typed (``info``) and as written (``meta``)."""

    x: np.ndarray
    maps: dict[str, np.ndarray]
    info: MapsInfo
    meta: dict


def read_maps(d: str | Path) -> SavedMaps:
    """What :func:`save_maps` wrote to ``d`` (the maps of the components ``maps.json``
    lists, each checked against the input)."""
    d = Path(d)
    require((d / "maps.json").is_file(), f"maps = {str(d)!r}: no maps.json (not a deploy output)")
    info, meta = read_maps_info(d / "maps.json")
    x = _read_planes(d / "input.tif", d)
    maps = {k: _read_planes(d / f"R_{k}.tif", d) for k in info.components}
    for k, v in maps.items():
        require(
            v.shape == x.shape,
            f"{d / f'R_{k}.tif'}: shape {v.shape[1:]} x {v.shape[0]} channels, the input "
            f"{x.shape[1:]} x {x.shape[0]}: the maps do not belong to this input",
        )
    return SavedMaps(x, maps, info, meta)


def load_maps(d: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """What :func:`save_maps` wrote to ``d``: the input ``(C, H, W)``, the residual map of
    each component listed in ``maps.json`` (same shape), and ``maps.json`` itself (checked
    as :class:`MapsInfo`; :func:`read_maps` gives it typed)."""
    s = read_maps(d)
    return s.x, s.maps, s.meta


def _write_tiff(tmp: Path, y: np.ndarray) -> None:
    import tifffile

    if y.shape[0] == 3:
        tifffile.imwrite(tmp, np.moveaxis(y, 0, 2).astype(np.float32), photometric="rgb")
    else:
        tifffile.imwrite(tmp, y.astype(np.float32), photometric="minisblack")


def _write_npy(tmp: Path, y: np.ndarray) -> None:
    np.save(tmp, y.astype(np.float32))


def _write_png(tmp: Path, y: np.ndarray) -> None:
    from PIL import Image

    from data_gen.preview import to_rgb8

    Image.fromarray(to_rgb8(linear_to_srgb(y))).save(tmp, format="PNG")


# an output's suffix -> its writer of (C, H, W) linear float to a path
WRITERS = {".tif": _write_tiff, ".tiff": _write_tiff, ".npy": _write_npy, ".png": _write_png}


def write_output(path: Path, y: np.ndarray) -> None:
    """``.tif``/``.tiff``: 32-bit float linear (RGB, or 4 planes R, Gr, Gb, B for packed
    Bayer data); ``.npy``; ``.png``: 8-bit sRGB preview (Bayer planes as half-size RGB).
    Written to a temporary sibling and renamed: ``path`` appears only complete."""
    suf = path.suffix.lower()
    require(suf in WRITERS, f"out = {str(path)!r}: use .tif, .npy or .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path) as tmp:
        WRITERS[suf](tmp, y)
