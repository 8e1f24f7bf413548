"""Deployment: run an exported model once per image, then compose at any strengths.

Library use::

    from residual_train.deploy import load_model, read_input, compose
    model = load_model("runs/export")                  # or load_model("name:best", registry=...)
    x = read_input("photo.tif")                        # (C, H, W) linear float32
    maps = model.predict(x)                            # {"blur": R_b, "noise": R_n}, tiled
    noise = model.noise_model(iso=800)                 # σ²(v) = A·max(v, 0) + B at ISO 800
    y = compose(x, maps, {"blur": 1.0, "noise": 0.3}, noise)   # any components the model has

Maps are saved as 32-bit float TIFF next to ``maps.json`` (what :mod:`recompose` needs:
the sensor's noise parameters at the image's ISO), so strengths can change later
without any network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_gen.errors import InputError, require
from data_gen.noise import NoiseModel
from data_gen.paths import written_atomically
from data_gen.raw import RAW_SUFFIXES
from data_gen.shards import read_mapping
from data_gen.sources import (
    BELOW_BLACK_TOLERANCE,
    check_linearize,
    linear_to_srgb,
    read_image_encoded,
)
from residual_train.deploy.compose import MODES, compose

# a registry inside the package: trained weights that ship with residual-train
SHIPPED = Path(__file__).resolve().parents[1] / "weights"

__all__ = [
    "MODES",
    "SHIPPED",
    "DeployedModel",
    "compose",
    "infer_tiled",
    "load_maps",
    "load_model",
    "read_input",
    "read_input_encoded",
    "save_maps",
    "tile_weights",
]


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


# noise reaches below black by a few of its own standard deviations at black (σ(0) = √B);
# a float file's rounding by a little (data_gen.sources.BELOW_BLACK_TOLERANCE) either way
BLACK_SIGMAS = 8.0


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


def tile_weights(n: int, start: int, size: int, overlap: int) -> np.ndarray:
    """1-D blending weights of a tile ``[start, start + size)`` on an axis of length ``n``.

    Zero within ``overlap // 4`` of an edge shared with a neighbour tile (where padding
    changes the network's output), rising smoothly over ``overlap // 2``; 1 at the
    image's own borders.
    """
    margin, ramp = overlap // 4, max(1, overlap // 2)
    pos = np.arange(size, dtype=np.float64)
    w = np.ones(size)
    if start > 0:
        t = np.clip((pos - margin + 0.5) / ramp, 0, 1)
        w *= 0.5 - 0.5 * np.cos(np.pi * t)
    if start + size < n:
        t = np.clip((size - 1 - pos - margin + 0.5) / ramp, 0, 1)
        w *= 0.5 - 0.5 * np.cos(np.pi * t)
    return w


def _starts(n: int, tile: int, overlap: int) -> list[int]:
    if n <= tile:
        return [0]
    step = tile - overlap
    s = list(range(0, n - tile, step))
    return [*s, n - tile]


def infer_tiled(
    run,
    x: np.ndarray,
    heads: list[str],
    tile: int = 256,
    overlap: int = 64,
    batch: int = 4,
    progress: bool = False,
    aux: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Apply ``run(batch (B, C, t, t)) -> {head: (B, C, t, t)}`` over tiles and blend.

    ``aux`` ``(F, H, W)``: per-pixel inputs over the whole frame (a field-aware model's
    position maps), cut into the same tiles: then ``run(tiles, aux_tiles (B, F, t, t))``.
    Memory: the output maps plus ``batch`` tiles, whatever the image size.
    """
    require(tile > overlap >= 4, f"tile = {tile}, overlap = {overlap}: need tile > overlap >= 4")
    c, h, w = x.shape
    require(
        aux is None or aux.shape[1:] == x.shape[1:],
        f"per-pixel inputs of shape {None if aux is None else aux.shape} do not cover the "
        f"image {x.shape}",
    )
    th, tw = min(tile, h), min(tile, w)
    out = {k: np.zeros((c, h, w), np.float32) for k in heads}
    norm = np.zeros((h, w), np.float64)
    boxes = [(y0, x0) for y0 in _starts(h, th, overlap) for x0 in _starts(w, tw, overlap)]
    from tqdm import tqdm

    for i in tqdm(range(0, len(boxes), batch), desc="tiles", unit="batch", disable=not progress):
        chunk = boxes[i : i + batch]
        tiles = np.stack([x[:, y0 : y0 + th, x0 : x0 + tw] for y0, x0 in chunk])
        if aux is None:
            res = run(np.ascontiguousarray(tiles))
        else:
            extra = np.stack([aux[:, y0 : y0 + th, x0 : x0 + tw] for y0, x0 in chunk])
            res = run(np.ascontiguousarray(tiles), np.ascontiguousarray(extra))
        for j, (y0, x0) in enumerate(chunk):
            wgt = np.outer(tile_weights(h, y0, th, overlap), tile_weights(w, x0, tw, overlap))
            norm[y0 : y0 + th, x0 : x0 + tw] += wgt
            for k in heads:
                out[k][:, y0 : y0 + th, x0 : x0 + tw] += (res[k][j] * wgt).astype(np.float32)
    inv = (1.0 / norm).astype(np.float32)
    for k in heads:
        out[k] *= inv
    return out


def default_iso(card: dict) -> float:
    """The ISO used when none is given: the geometric middle of the card's ISO range."""
    nm = card.get("noise_model")
    require(nm is not None, "the model card has no sensor noise model")
    return float(np.sqrt(float(nm["iso"][0]) * float(nm["iso"][-1])))


def card_noise_model(card: dict, iso: float | None = None) -> NoiseModel:
    """The noise model a card's table gives at ``iso`` (linear interpolation between its
    points; default: :func:`default_iso`)."""
    nm = card.get("noise_model")
    require(nm is not None, "the model card has no sensor noise model")
    iso = default_iso(card) if iso is None else float(iso)
    isos = np.asarray(nm["iso"], float)
    require(
        isos[0] <= iso <= isos[-1],
        f"iso = {iso:g} is outside the model's training range {isos[0]:g}..{isos[-1]:g}",
    )
    a, b = np.asarray(nm["a"]), np.asarray(nm["b"])
    channels = a.shape[1]
    A = np.array([np.interp(iso, isos, a[:, c]) for c in range(channels)], np.float32)
    B = np.array([np.interp(iso, isos, b[:, c]) for c in range(channels)], np.float32)
    return NoiseModel(A, B)


class DeployedModel:
    """An exported model directory: its card and an onnxruntime (or torch) session."""

    def __init__(self, path: str | Path, backend: str = "onnx", threads: int | None = None) -> None:
        self.path = Path(path)
        require(
            (self.path / "card.json").is_file(),
            f"model = {str(path)!r}: no card.json (not an exported model directory)",
        )
        self.card = read_mapping(self.path / "card.json", "model card")
        for key in ("components", "channels"):
            require(key in self.card, f"{self.path / 'card.json'}: the card lacks {key!r}")
        self.heads: list[str] = list(self.card["components"])
        self.channels = int(self.card["channels"])
        self.sigma_input = "sigma" in self.card.get("inputs", [])
        self.field_input = "field" in self.card.get("inputs", [])
        self._bank = None
        if self.field_input:
            f = self.card.get("field") or {}
            table = np.asarray(f.get("table") or [], np.float32)
            require(
                table.ndim == 2 and table.shape[1] == int(f.get("kernels", -1)),
                f"{self.path / 'card.json'}: the model reads field maps but the card's field "
                "entry has no (positions, kernels) table",
            )
            self.field_table = table
        require(backend in ("onnx", "torch"), f"backend = {backend!r}: onnx or torch")
        self.backend = backend
        if backend == "onnx":
            import onnxruntime as ort

            try:
                opts = ort.SessionOptions()
                if threads:
                    opts.intra_op_num_threads = opts.inter_op_num_threads = int(threads)
                self.session = ort.InferenceSession(
                    str(self.path / "model.onnx"), opts, providers=["CPUExecutionProvider"]
                )
            except Exception as e:
                raise InputError(
                    f"{self.path / 'model.onnx'}: not a loadable ONNX model ({e})"
                ) from None
            inp = self.session.get_inputs()[0].shape
            require(
                inp[1] == self.channels,
                f"{self.path}: card says {self.channels} channels, the ONNX model takes {inp[1]}",
            )
            outs = [o.name for o in self.session.get_outputs()]
            require(
                outs == [f"R_{h}" for h in self.heads],
                f"{self.path / 'card.json'}: the card lists components {self.heads}, "
                f"model.onnx outputs {outs}: the card does not belong to this graph",
            )
        else:
            self.net = self._torch_net()

    def _torch_net(self):
        """The card's network with ``weights.safetensors`` (the torch backend); a card that
        does not describe these weights is an :class:`InputError` naming both files."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from residual_train.models import build_model
        from residual_train.models.weights import load_weights

        weights = self.path / "weights.safetensors"
        require(weights.is_file(), f"{weights}: missing (the torch backend needs it)")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as e:
            raise InputError(f"{weights}: not a readable safetensors file ({e})") from None
        net = build_model(dict(self.card["model"]), self.channels).eval()
        load_weights(net, state, f"{self.path / 'card.json'} does not describe {weights.name}")
        return net

    def noise_model(self, iso: float | None = None) -> NoiseModel:
        """The training sensor's noise model at ``iso`` (interpolated in the card's table;
        default: the geometric middle of its ISO range)."""
        require(
            self.card.get("noise_model") is not None,
            f"{self.path}: the card has no sensor noise model",
        )
        return card_noise_model(self.card, iso)

    def _run(
        self,
        tiles: np.ndarray,
        noise: NoiseModel | None = None,
        field: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        sigma = None
        if self.sigma_input:  # the conditioning map the loader gives in training
            sigma = noise.std(tiles).astype(np.float32)
        if self.backend == "onnx":
            feeds = {"x": tiles}
            if sigma is not None:
                feeds["sigma"] = sigma
            if field is not None:
                feeds["field"] = field
            outs = self.session.run(None, feeds)
            return dict(zip(self.heads, outs, strict=True))
        import torch

        def t(a):
            return None if a is None else torch.from_numpy(a)

        with torch.no_grad():
            out = self.net(t(tiles), t(sigma), t(field))
        return {k: v.numpy() for k, v in out.items()}

    def bank(self):
        """The PSF bank of the card's lens (built once; field-aware models index it)."""
        if self._bank is None:
            from data_gen.optics import build_bank
            from data_gen.paths import bank_cache_dir

            lens = self.card.get("lens")
            require(bool(lens), f"{self.path}: the card names no lens (field-aware model)")
            self._bank = build_bank(lens, self.channels, bank_cache_dir())
        return self._bank

    def psf_index(self, hw: tuple[int, int], lens_state: int = 0) -> np.ndarray:
        """``(H, W)`` bank PSF index of every pixel of a whole frame of size ``hw``, with the
        lens in state ``lens_state`` (the renderer's rule, :func:`data_gen.render.psf_index_map`)."""
        from data_gen.render import psf_index_map

        bank = self.bank()
        states = bank.grid.shape[0] if hasattr(bank, "grid") else bank.psfs.shape[0]
        require(
            0 <= int(lens_state) < states,
            f"lens_state = {lens_state}: the card's lens has states 0..{states - 1}",
        )
        return psf_index_map(bank, tuple(hw), tuple(hw), 0, int(lens_state))

    def field_maps(self, psf_index: np.ndarray) -> np.ndarray:
        """``(K, H, W)`` float32 position maps of a ``(H, W)`` bank-index map."""
        idx = np.asarray(psf_index)
        n = len(self.field_table)
        require(
            idx.ndim == 2 and idx.min() >= 0 and idx.max() < n,
            f"psf_index: a (H, W) map of bank indices in 0..{n - 1}, got shape {idx.shape}",
        )
        return np.ascontiguousarray(np.moveaxis(self.field_table[idx], -1, 0))

    def predict(
        self,
        x: np.ndarray,
        tile: int = 256,
        overlap: int = 64,
        batch: int = 4,
        iso: float | None = None,
        progress: bool = False,
        psf_index: np.ndarray | None = None,
        lens_state: int = 0,
    ) -> dict[str, np.ndarray]:
        """Residual maps of the whole frame ``x`` ``(C, H, W)``, by tiles. A field-aware
        model also reads each pixel's position: ``psf_index`` ``(H, W)`` (the bank PSF of
        every pixel, e.g. what :func:`data_gen.render.render_frame` rendered with), else the
        frame's own positions through the card's lens in state ``lens_state``."""
        require(
            x.ndim == 3 and x.shape[0] == self.channels,
            f"image has shape {x.shape}; the model wants ({self.channels}, H, W)",
        )
        noise = self.noise_model(iso) if self.sigma_input else None
        field = None
        if self.field_input:
            if psf_index is None:
                psf_index = self.psf_index(x.shape[1:], lens_state)
            require(
                np.shape(psf_index) == x.shape[1:],
                f"psf_index has shape {np.shape(psf_index)}; the image is {x.shape[1:]}",
            )
            field = self.field_maps(psf_index)
        return infer_tiled(
            lambda t, f=None: self._run(t, noise, f),
            x.astype(np.float32, copy=False),
            self.heads,
            tile,
            overlap,
            batch,
            progress,
            field,
        )


def load_model(
    model: str | Path,
    registry: str | Path | None = None,
    backend: str = "onnx",
    threads: int | None = None,
) -> DeployedModel:
    """An export directory, ``NAME[:VERSION|ALIAS]`` in ``registry``, or without a registry a
    model shipped inside the package (``default``; see :data:`SHIPPED`). Registry models are
    sha256-verified on every load."""
    from residual_train.registry import Registry

    if registry:
        return DeployedModel(Registry(registry).fetch(str(model)), backend, threads)
    p = Path(str(model)).expanduser()
    if p.is_dir():
        return DeployedModel(p, backend, threads)
    shipped = shipped_models()
    require(
        str(model).partition(":")[0] in shipped,
        f"model = {str(model)!r}: not an export directory, and not a model shipped with the "
        f"package ({', '.join(shipped) or 'none'}); for a registry reference add registry=DIR",
    )
    return DeployedModel(Registry(SHIPPED).fetch(str(model)), backend, threads)


def shipped_models() -> list[str]:
    """Names in the registry shipped inside the package (:data:`SHIPPED`)."""
    if not SHIPPED.is_dir():
        return []
    return sorted(p.name for p in SHIPPED.iterdir() if (p / "index.json").is_file())


def predict_sequential(
    noise_model: DeployedModel, blur_model: DeployedModel, x: np.ndarray, **kw
) -> dict[str, np.ndarray]:
    """A pair of single-head models: noise first, blur on the denoised image (docs/design.md §4)."""
    require(
        noise_model.heads == ["noise"] and blur_model.heads == ["blur"],
        f"sequential mode needs a noise-only and a blur-only model, got "
        f"{noise_model.heads} and {blur_model.heads}",
    )
    r_n = noise_model.predict(x, **kw)["noise"]
    r_b = blur_model.predict(x + r_n, **kw)["blur"]
    return {"blur": r_b, "noise": r_n}


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


def load_maps(d: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    import tifffile

    d = Path(d)
    require((d / "maps.json").is_file(), f"maps = {str(d)!r}: no maps.json (not a deploy output)")
    meta = read_mapping(d / "maps.json", "maps description")
    comps = meta.get("components")
    require(
        isinstance(comps, list) and comps and all(isinstance(c, str) for c in comps),
        f"{d / 'maps.json'}: 'components' must list the residual maps",
    )

    def planes(p: Path) -> np.ndarray:
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

    x = planes(d / "input.tif")
    maps = {k: planes(d / f"R_{k}.tif") for k in comps}
    for k, v in maps.items():
        require(
            v.shape == x.shape,
            f"{d / f'R_{k}.tif'}: shape {v.shape[1:]} x {v.shape[0]} channels, the input "
            f"{x.shape[1:]} x {x.shape[0]}: the maps do not belong to this input",
        )
    return x, maps, meta


def write_output(path: Path, y: np.ndarray) -> None:
    """``.tif``/``.tiff``: 32-bit float linear (RGB, or 4 planes R, Gr, Gb, B for packed
    Bayer data); ``.npy``; ``.png``: 8-bit sRGB preview (Bayer planes as half-size RGB).
    Written to a temporary sibling and renamed: ``path`` appears only complete."""
    suf = path.suffix.lower()
    require(
        suf in (".tif", ".tiff", ".npy", ".png"), f"out = {str(path)!r}: use .tif, .npy or .png"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path) as tmp:
        if suf in (".tif", ".tiff"):
            import tifffile

            if y.shape[0] == 3:
                tifffile.imwrite(tmp, np.moveaxis(y, 0, 2).astype(np.float32), photometric="rgb")
            else:
                tifffile.imwrite(tmp, y.astype(np.float32), photometric="minisblack")
        elif suf == ".npy":
            np.save(tmp, y.astype(np.float32))
        else:
            from PIL import Image

            from data_gen.preview import to_rgb8

            Image.fromarray(to_rgb8(linear_to_srgb(y))).save(tmp, format="PNG")
