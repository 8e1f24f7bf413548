"""Inference backends of an exported model, in a registry keyed by name
(``backend=onnx|torch``): each runs a batch of tiles through the network and returns one
residual map per head.

* ``onnx``: ``model.onnx`` in onnxruntime on the CPU (the default; what devices run);
* ``torch``: the card's network with ``weights.safetensors`` in PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from data_gen.core.errors import InputError, require
from residual_train.release.card import ModelCard


class Backend(Protocol):
    """Runs tiles ``x`` ``(B, C, t, t)`` float32, with the model's extra inputs where it reads
    them (``sigma`` ``(B, C, t, t)``: the noise σ per pixel; ``field`` ``(B, K, t, t)``: the
    position maps), and returns ``{head: (B, C, t, t)}`` float32."""

    def __call__(
        self, x: np.ndarray, sigma: np.ndarray | None, field: np.ndarray | None
    ) -> dict[str, np.ndarray]: ...


BACKENDS: dict[str, type] = {}


def backend(name: str):
    """Register a backend class under ``name``: ``cls(path, card, threads)``, where ``path``
    is the export directory and ``card`` its :class:`ModelCard`."""

    def add(cls: type) -> type:
        BACKENDS[name] = cls
        return cls

    return add


def open_backend(name: str, path: Path, card: ModelCard, threads: int | None = None) -> Backend:
    """The backend ``name`` of the export directory ``path``, loaded and checked against
    ``card``."""
    require(name in BACKENDS, f"backend = {name!r}: {' or '.join(BACKENDS)}")
    return BACKENDS[name](path, card, threads)


@backend("onnx")
class OnnxBackend:
    """``model.onnx`` in an onnxruntime CPU session (``threads``: intra- and inter-op
    threads; None = onnxruntime's default)."""

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.heads = list(card.components)
        channels = card.channels
        try:
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = opts.inter_op_num_threads = int(threads)
            self.session = ort.InferenceSession(
                str(path / "model.onnx"), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:
            raise InputError(f"{path / 'model.onnx'}: not a loadable ONNX model ({e})") from None
        inp = self.session.get_inputs()[0].shape
        require(
            inp[1] == channels,
            f"{path}: card says {channels} channels, the ONNX model takes {inp[1]}",
        )
        outs = [o.name for o in self.session.get_outputs()]
        require(
            outs == [f"R_{h}" for h in self.heads],
            f"{path / 'card.json'}: the card lists components {self.heads}, "
            f"model.onnx outputs {outs}: the card does not belong to this graph",
        )

    def __call__(
        self, x: np.ndarray, sigma: np.ndarray | None, field: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        feeds = {"x": x}
        if sigma is not None:
            feeds["sigma"] = sigma
        if field is not None:
            feeds["field"] = field
        outs = self.session.run(None, feeds)
        return dict(zip(self.heads, outs, strict=True))


@backend("torch")
class TorchBackend:
    """The card's network with ``weights.safetensors``; a card that does not describe these
    weights is an :class:`InputError` naming both files."""

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from residual_train.models import build_model
        from residual_train.models.weights import load_weights

        weights = path / "weights.safetensors"
        require(weights.is_file(), f"{weights}: missing (the torch backend needs it)")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as e:
            raise InputError(f"{weights}: not a readable safetensors file ({e})") from None
        self.net = build_model(dict(card.model), card.channels).eval()
        load_weights(self.net, state, f"{path / 'card.json'} does not describe {weights.name}")

    def __call__(
        self, x: np.ndarray, sigma: np.ndarray | None, field: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        import torch

        def t(a):
            return None if a is None else torch.from_numpy(a)

        with torch.no_grad():
            out = self.net(t(x), t(sigma), t(field))
        return {k: v.numpy() for k, v in out.items()}
