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

Modules: :mod:`.io` (inputs decoded to linear light, maps and outputs written and read),
:mod:`.tiling` (tiled inference), :mod:`.backends` (onnxruntime and torch, by name),
:mod:`.model` (:class:`DeployedModel`, :func:`load_model`, the shipped models),
:mod:`.compose` (composition at strengths), :mod:`.recompose` (its command line).
"""

from __future__ import annotations

from residual_train.deploy.compose import MODES, compose
from residual_train.deploy.io import (
    BLACK_SIGMAS,
    check_capture,
    load_maps,
    read_input,
    read_input_encoded,
    save_maps,
    write_output,
)
from residual_train.deploy.model import (
    SHIPPED,
    DeployedModel,
    card_noise_model,
    default_iso,
    load_model,
    predict_sequential,
    shipped_models,
)
from residual_train.deploy.tiling import infer_tiled, tile_weights

__all__ = [
    "BLACK_SIGMAS",
    "MODES",
    "SHIPPED",
    "DeployedModel",
    "card_noise_model",
    "check_capture",
    "compose",
    "default_iso",
    "infer_tiled",
    "load_maps",
    "load_model",
    "predict_sequential",
    "read_input",
    "read_input_encoded",
    "save_maps",
    "shipped_models",
    "tile_weights",
    "write_output",
]
