"""Smaller graphs for devices: the exported float32 ONNX model as float16 or int8, with
what that costs measured against float32 (``python -m residual_train.release.export ...
precision=fp16|int8``).

* ``fp16``: every weight and activation in float16, inputs and outputs kept float32
  (onnxruntime's converter). Half the size; faster where the hardware has float16.
* ``int8``: static QDQ quantisation (onnxruntime.quantization; per-channel int8 weights,
  uint8 activations calibrated on rendered photographs at the card's ISOs). The linear
  deconvolution path, the first layer and the output heads stay float32: they carry the
  residuals' small, signed values, which 8 bits cannot hold.

What a reduction costs is measured by running the graphs -- size, speed and the PSNR of
the composed output against float32 -- in :mod:`residual_train.evaluate.device`, which also
renders int8's calibration batches (the release stage runs no deployment code).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from data_gen.core.errors import require

PRECISIONS = ("fp32", "fp16", "int8")
# nodes int8 leaves in float32 (names from the torch exporter)
KEEP_FLOAT = re.compile(r"/deconv|/stem/|/net/(blur|noise)/")


def to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


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


def reduce(src: Path, dst: Path, precision: str, calib: Callable[[], list[dict]]) -> None:
    """``src`` (float32 ONNX) -> ``dst`` at ``precision``; ``calib()`` gives int8's
    calibration batches (``{"x": (1, C, H, W) float32, ...}``, the graph's inputs)."""
    require(precision in REDUCERS, f"precision = {precision!r}: use one of {PRECISIONS}")
    REDUCERS[precision](src, dst, calib)


# precision -> how the float32 graph becomes it (int8 needs calibration batches)
REDUCERS: dict[str, Callable[[Path, Path, Callable[[], list[dict]]], None]] = {
    "fp16": lambda src, dst, calib: to_fp16(src, dst),
    "int8": lambda src, dst, calib: to_int8(src, dst, calib()),
}
