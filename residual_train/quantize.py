"""Smaller graphs for devices: the exported float32 ONNX model as float16 or int8, with
what that costs measured against float32 (``python -m residual_train.export ...
precision=fp16|int8``).

* ``fp16``: every weight and activation in float16, inputs and outputs kept float32
  (onnxruntime's converter). Half the size; faster where the hardware has float16.
* ``int8``: static QDQ quantisation (onnxruntime.quantization; per-channel int8 weights,
  uint8 activations calibrated on rendered photographs at the card's ISOs). The linear
  deconvolution path, the first layer and the output heads stay float32: they carry the
  residuals' small, signed values, which 8 bits cannot hold.

:func:`device_figures` measures size, speed (ms per megapixel on this CPU) and the PSNR of
the composed output (a = b = 1) of the reduced model against the float32 one on the
photographs bundled with scikit-image rendered through the card's lens and sensor.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data_gen.errors import require

PRECISIONS = ("fp32", "fp16", "int8")
# nodes int8 leaves in float32 (names from the torch exporter)
KEEP_FLOAT = re.compile(r"/deconv|/stem/|/net/(blur|noise)/")


def to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def calibration_inputs(card: dict, n: int = 12, size: int = 96, seed: int = 0) -> list[dict]:
    """``x`` (and ``sigma``) batches like the ones deployment feeds: crops of the builtin
    photographs rendered through the card's lens and sensor at its lowest, middle and
    highest ISO."""
    from data_gen.render import render_frame
    from residual_train.deploy import card_noise_model
    from residual_train.evaluate.images import load_images
    from residual_train.evaluate.run import card_bank

    bank = card_bank(card)
    table = card["noise_model"]["iso"]
    isos = [table[0], table[len(table) // 2], table[-1]]
    rng = np.random.default_rng(seed)
    out = []
    for i, (_, img) in enumerate(load_images("builtin")):
        for iso in isos:
            noise = card_noise_model(card, iso)
            r = render_frame(img, bank, noise, np.random.default_rng([seed, i, int(iso)]))
            x = r["noise_blur"]
            for _ in range(max(1, n // 15)):
                y0 = int(rng.integers(0, x.shape[1] - size))
                x0 = int(rng.integers(0, x.shape[2] - size))
                crop = np.ascontiguousarray(x[None, :, y0 : y0 + size, x0 : x0 + size])
                item = {"x": crop}
                if "sigma" in card.get("inputs", []):
                    item["sigma"] = noise.std(crop).astype(np.float32)
                if "field" in card.get("inputs", []):  # the crop's positions in the frame
                    idx = r["psf_index"][y0 : y0 + size, x0 : x0 + size]
                    table = np.asarray(card["field"]["table"], np.float32)
                    item["field"] = np.ascontiguousarray(np.moveaxis(table[idx], -1, 0)[None])
                out.append(item)
    return out


def to_int8(src: Path, dst: Path, calib: list[dict]) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it: Iterator[dict] = iter(calib)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    pre = dst.with_name(dst.stem + ".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    keep = [n.name for n in onnx.load(str(pre)).graph.node if KEEP_FLOAT.search(n.name)]
    try:
        quantize_static(
            str(pre),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "ConvTranspose"],
            nodes_to_exclude=keep,
        )
    finally:
        pre.unlink(missing_ok=True)


def reduce(src: Path, dst: Path, precision: str, card: dict) -> None:
    """``src`` (float32 ONNX) -> ``dst`` at ``precision``."""
    require(precision in PRECISIONS[1:], f"precision = {precision!r}: use one of {PRECISIONS}")
    if precision == "fp16":
        to_fp16(src, dst)
    else:
        to_int8(src, dst, calibration_inputs(card))


def _ms_per_mp(model, x: np.ndarray, iso: float) -> float:
    model.predict(x, tile=256, overlap=32, iso=iso)  # warm-up
    times = []
    for _ in range(3):
        t = time.perf_counter()
        model.predict(x, tile=256, overlap=32, iso=iso)
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times)) / (x.shape[1] * x.shape[2] / 1e6)


def device_figures(fp32_dir: Path, reduced_dir: Path, precision: str, size: int = 192) -> dict:
    """Size, speed and composed-output PSNR of the reduced model against float32."""
    from data_gen.render import render_frame
    from residual_train.deploy import DeployedModel
    from residual_train.deploy.compose import compose_blur_noise
    from residual_train.evaluate.baselines import psnr
    from residual_train.evaluate.images import load_images
    from residual_train.evaluate.run import card_bank

    ref, red = DeployedModel(fp32_dir), DeployedModel(reduced_dir)
    bank = card_bank(ref.card)
    isos = [float(v) for v in ref.card["noise_model"]["iso"]]
    isos = [isos[0], isos[-1]]
    per_iso = {}
    images = load_images("builtin", max_size=size)
    for iso in isos:
        noise = ref.noise_model(iso)
        vals = []
        for i, (_, img) in enumerate(images):
            r = render_frame(img, bank, noise, np.random.default_rng([7, i, int(iso)]))
            x = r["noise_blur"]
            a, b = ref.predict(x, iso=iso), red.predict(x, iso=iso)
            ya = compose_blur_noise(x, a["blur"], a["noise"], 1, 1, noise)
            yb = compose_blur_noise(x, b["blur"], b["noise"], 1, 1, noise)
            vals.append(psnr(yb, ya))
        per_iso[str(int(iso))] = float(np.mean(vals))
    x = np.ascontiguousarray(
        np.random.default_rng(0).random((ref.channels, 512, 512), dtype=np.float32) * 0.5
    )
    return {
        "precision": precision,
        "bytes": (reduced_dir / "model.onnx").stat().st_size,
        "fp32_bytes": (fp32_dir / "model.onnx").stat().st_size,
        "ms_per_megapixel": _ms_per_mp(red, x, isos[0]),
        "fp32_ms_per_megapixel": _ms_per_mp(ref, x, isos[0]),
        "psnr_vs_fp32": per_iso,
        "psnr_vs_fp32_note": "composed output (a = b = 1) of the reduced graph against the "
        "float32 graph, builtin photographs rendered through the card's lens and sensor",
    }
