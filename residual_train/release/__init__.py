"""The release stage: a trained checkpoint becomes files a device can trust.

* :mod:`~residual_train.release.export` -- checkpoint -> ONNX + safetensors + card, with
  ONNX parity against PyTorch (``python -m residual_train.release.export``);
* :mod:`~residual_train.release.context` -- what a run left beside its checkpoint (its
  config, result, and its dataset's config and manifest), typed, as the export reads it;
* :mod:`~residual_train.release.quantize` -- the float32 graph as float16 or int8;
* :mod:`~residual_train.release.registry` -- a versioned, checksummed model registry;
* :mod:`~residual_train.release.publish` -- copy an export into a registry
  (``python -m residual_train.release.publish``);
* :mod:`~residual_train.release.fetch` -- a device downloads a published model, verified
  (``python -m residual_train.release.fetch``).

It comes after learning (it reads checkpoints and :mod:`residual_train.models`) and before
use: nothing here imports ``deploy``, ``evaluate``, ``serve`` or ``pipelines`` (an
import-linter contract in ``pyproject.toml``). What a reduced-precision export measures by
running the graph (its calibration images and the composed-output PSNR against float32)
lives in :mod:`residual_train.evaluate.device` and reaches :func:`export.export` as an
object the export config names (``device._target_``).
"""
