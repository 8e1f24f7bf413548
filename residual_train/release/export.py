"""``python -m residual_train.release.export ckpt=PATH out_dir=DIR``: checkpoint -> deployable files.

Writes ``model.onnx`` (opset >= 17; dynamic batch, height, width; inputs ``x`` [,
``sigma``] [, ``field``], outputs ``R_<head>`` in head order), ``weights.safetensors``,
``card.json`` (machine-readable) and ``card.md``, and ``SHA256SUMS`` over all four.
Before anything appears under ``out_dir`` the ONNX graph is run with onnxruntime
against PyTorch on random and on rendered dead-leaves input at several sizes
(including sizes that are not multiples of the stride); a max |diff| above the
tolerance fails the export and leaves ``out_dir`` untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from data_gen import __version__
from data_gen.core.cli import run_app
from data_gen.core.errors import InputError, require
from data_gen.core.paths import APPS, filled_atomically, require_new_dir
from data_gen.core.values import integer, number
from data_gen.sensor import noise_table
from data_gen.shards import sha256_file
from residual_train.models import ResidualNet, build_model
from residual_train.models.weights import load_weights
from residual_train.release.card import FORMAT as CARD_FORMAT
from residual_train.release.card import ModelCard
from residual_train.release.context import DatasetConfig, TrainingContext, run_config_path
from residual_train.release.quantize import PRECISIONS, reduce
from residual_train.training.checkpoint import BadCheckpoint, TrainingCheckpoint
from residual_train.training.result import RunResult

PARITY_SIZES = ((1, 37, 53), (2, 64, 64), (1, 100, 131), (1, 128, 96))


class DeviceCheck(Protocol):
    """Measures a reduced graph by running it (the release stage only converts graphs):
    :class:`residual_train.evaluate.device.DeviceCheck`, named by the export config."""

    def calibration_inputs(self, card: ModelCard) -> list[dict]: ...

    def figures(self, fp32_dir: Path, reduced_dir: Path, precision: str) -> dict: ...


class ExportError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model."""


def input_names(net: ResidualNet) -> list[str]:
    """The graph's inputs: ``x``, then ``sigma`` (noise-level map) and ``field`` (the
    per-pixel position maps of a field-aware deconvolution) where the model reads them."""
    return ["x", *(["sigma"] if net.sigma_map else []), *(["field"] if net.field_kernels else [])]


class OnnxWrapper(torch.nn.Module):
    """Tuple outputs in head order (ONNX has no dict outputs); inputs in
    :func:`input_names` order."""

    def __init__(self, net: ResidualNet) -> None:
        super().__init__()
        self.net = net
        self.names = input_names(net)

    def forward(self, x: torch.Tensor, *maps: torch.Tensor):
        rest = iter(maps)  # sigma, then field: those the network reads (input_names)
        sigma = next(rest) if self.net.sigma_map else None
        field = next(rest) if self.net.field_kernels else None
        out = self.net(x, sigma, field)
        return tuple(out[h] for h in self.net.heads)


def field_card(net: ResidualNet) -> dict | None:
    """The card's ``field`` entry of a field-aware model: how deployment builds its
    ``field`` input (``table[psf_index]`` per pixel, the bank of the card's lens)."""
    if not net.field_kernels:
        return None
    return {
        "kernels": net.field_kernels,
        "positions": net.field_positions,
        "maps": "field[k, y, x] = table[psf_index(y, x)][k]: the mixing weights of the bank "
        "PSF at each pixel (data_gen.render.psf_index_map of the card's lens)",
        "table": net.field_table.tolist(),
    }


def load_checkpoint(path: str | Path) -> tuple[ResidualNet, TrainingCheckpoint]:
    """Net (eval mode) and the checkpoint it was built from (loaded without pickle)."""
    p = Path(path)
    require(p.is_file(), f"ckpt = {str(path)!r}: file does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"ckpt = {str(path)!r}: not a loadable checkpoint ({e})") from None
    require(isinstance(ck, dict), f"{p}: not a residual-train checkpoint (not a mapping)")
    try:
        rec = TrainingCheckpoint.of(ck)
    except BadCheckpoint as e:
        require(
            e.part != "hyper_parameters",
            f"{p}: not a residual-train checkpoint (hyper_parameters lack model/channels)",
        )
        require(
            e.part != "state_dict",
            f"{p}: not a residual-train checkpoint (it holds no state_dict: no weights)",
        )
        raise InputError(f"{p}: not a residual-train checkpoint (its {e.part} is wrong)") from None
    hp = rec.hyper_parameters
    require(
        hp.channels is not None,
        f"{p}: not a residual-train checkpoint (hyper_parameters lack model/channels)",
    )
    net = build_model(dict(hp.model), int(hp.channels))
    load_weights(
        net,
        rec.state_of("net."),
        f"{p}: its weights do not fit the network its hyper_parameters describe",
    )
    return net.eval(), rec


def keep_heads(net: ResidualNet, heads: list[str] | None) -> list[str]:
    """Remove from ``net`` every head not in ``heads`` (None: keep all); returns the removed
    ones. A head the deconvolution path reads (``deconv_base=denoised``: noise) stays."""
    if heads is None:
        return []
    heads = [heads] if isinstance(heads, str) else list(heads)
    unknown = [h for h in heads if h not in net.heads]
    require(heads and not unknown, f"heads = {heads}: the checkpoint's heads are {net.heads}")
    if net.deconv_size and net.deconv_base == "denoised" and "blur" in heads:
        require(
            "noise" in heads,
            "heads: the blur head's deconvolution reads the noise head; keep noise",
        )
    dropped = [h for h in net.heads if h not in heads]
    for h in dropped:
        del net.out[h]
    net.heads = [h for h in net.heads if h in heads]
    return dropped


def parity_inputs(channels: int, seed: int = 0) -> list[np.ndarray]:
    """Random normal and rendered dead-leaves + noise batches at PARITY_SIZES."""
    from data_gen.sources import dead_leaves

    rng = np.random.default_rng(seed)
    frame = dead_leaves(rng, 160, channels, 2)
    out = []
    for b, h, w in PARITY_SIZES:
        out.append(rng.normal(0.3, 0.3, (b, channels, h, w)).astype(np.float32))
        real = np.stack([frame[:, i : i + h, i : i + w] for i in range(b)])
        out.append((real + rng.normal(0, 0.02, real.shape)).astype(np.float32))
    return out


def check_parity(onnx_path: Path, net: ResidualNet, tol: float) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst, sizes = 0.0, []
    rng = np.random.default_rng(1)
    for x in parity_inputs(net.channels):
        feeds = {"x": x}
        sigma = field = None
        if net.sigma_map:
            sigma = np.full_like(x, 0.01)
            feeds["sigma"] = sigma
        if net.field_kernels:  # per-pixel maps that vary (a frame's positions)
            b, _, h, w = x.shape
            field = rng.normal(0, 1, (b, net.field_kernels, h, w)).astype(np.float32)
            feeds["field"] = field
        try:
            got = sess.run(None, feeds)
        except Exception as e:  # onnxruntime's own error types
            raise ExportError(f"the ONNX graph fails on input {tuple(x.shape)}: {e}") from None
        with torch.no_grad():
            want = net(
                torch.from_numpy(x),
                None if sigma is None else torch.from_numpy(sigma),
                None if field is None else torch.from_numpy(field),
            )
        diff = max(
            float(np.abs(g - want[h].numpy()).max()) for g, h in zip(got, net.heads, strict=True)
        )
        worst = max(worst, diff)
        sizes.append(list(x.shape))
        if not diff <= tol:
            raise ExportError(
                f"ONNX parity failed at input {tuple(x.shape)}: max |diff| = "
                f"{diff:.3g} > {tol:g}; nothing was written"
            )
    return {
        "max_abs_diff": worst,
        "tolerance": tol,
        "shapes": sizes,
        "runtime": f"onnxruntime {ort.__version__}",
    }


def export(
    ckpt: str | Path,
    out_dir: str | Path,
    opset: int = 17,
    tol: float = 1e-4,
    precision: str = "fp32",
    min_device_psnr: float = 30.0,
    heads: list[str] | None = None,
    device: DeviceCheck | None = None,
) -> ModelCard:
    """Export ``ckpt`` into ``out_dir`` (must not hold files yet); returns the card.

    ``heads``: the heads to keep (default: all). The others leave the graph and the card,
    which records them as ``dropped_heads``: their components are neither corrected nor
    rendered by the evaluation (the kept heads were trained on inputs holding them too).

    ``precision='fp16'|'int8'``: ``model.onnx`` is the reduced graph (the float32 one is
    parity-checked against PyTorch first); the card's ``device`` entry holds its size,
    speed and composed-output PSNR against float32, which must reach ``min_device_psnr``,
    measured by ``device`` (e.g. :class:`residual_train.evaluate.device.DeviceCheck`).
    """
    require(precision in PRECISIONS, f"precision = {precision!r}: use one of {PRECISIONS}")
    require(
        precision == "fp32" or device is not None,
        f"precision = {precision}: a reduced graph is measured before it is kept; give the "
        "export a device check (device._target_ in conf/apps/export.yaml)",
    )
    ckpt, out_dir = Path(ckpt), Path(out_dir)
    integer(opset, "opset", 17)
    number(tol, "tol", lo=0)
    number(min_device_psnr, "min_device_psnr")
    require_new_dir(out_dir)
    net, ck = load_checkpoint(ckpt)
    dropped = keep_heads(net, heads)
    model = {**ck.hyper_parameters.model, "heads": list(net.heads)}
    context = TrainingContext.of(ckpt)
    with filled_atomically(out_dir) as tmp:
        write_onnx(net, tmp / "model.onnx", opset)
        parity = check_parity(tmp / "model.onnx", net, tol)
        write_weights(net, tmp / "weights.safetensors")
        card = ModelCard.from_dict(
            {
                **card_entries(net, model, ck, ckpt, context, dropped),
                "parity": parity,
                "package_version": __version__,
                "torch_version": torch.__version__,
                "precision": precision,
            }
        )
        if precision != "fp32":
            card = card.with_entries(device=_reduce(tmp, card, precision, min_device_psnr, device))
        card = write_card(tmp, card)
    return card


def write_onnx(net: ResidualNet, path: Path, opset: int) -> None:
    """``net`` as an ONNX graph at ``path``: inputs :func:`input_names`, outputs ``R_<head>``,
    batch, height and width dynamic."""
    # trace at a size that needs padding, so no shape-dependent path is frozen
    names = input_names(net)
    c = net.channels
    args = tuple(torch.zeros(1, net.field_kernels if n == "field" else c, 37, 53) for n in names)
    outs = [f"R_{h}" for h in net.heads]
    dyn = {n: {0: "batch", 2: "height", 3: "width"} for n in [*names, *outs]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            OnnxWrapper(net),
            args,
            str(path),
            input_names=names,
            output_names=outs,
            dynamic_axes=dyn,
            opset_version=opset,
            dynamo=False,
        )


def write_weights(net: ResidualNet, path: Path) -> None:
    """``net``'s state as safetensors at ``path``."""
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()},
        str(path),
        metadata={"format": CARD_FORMAT},
    )


def card_entries(
    net: ResidualNet,
    model: dict,
    ck: TrainingCheckpoint,
    ckpt: Path,
    context: TrainingContext,
    dropped: list,
) -> dict:
    """The card's entries from the network to the checkpoint, in the order ``card.json``
    lists them (parity, versions, precision, device and files follow). ``model``: the
    network's settings as the card records them (the kept heads)."""
    data = context.data or DatasetConfig()
    result = context.result or RunResult()
    settings = data.rendered_components(context.run) or {}
    return {
        "format": CARD_FORMAT,
        "components": list(net.heads),
        "inputs": input_names(net),
        "outputs": [f"R_{h}" for h in net.heads],
        "layout": data.layout,
        "cfa": data.cfa if data.layout == "rggb" else None,
        "channels": net.channels,
        "scale": "linear; 0 = black level, 1 = white level",
        "stride": 2**net.levels,
        "model": model,
        "field": field_card(net),
        "noise_model": noise_table(data.sensor, net.channels, layout=data.layout),
        "lens": data.lens,
        # the settings each component was rendered with (their ranges): evaluation
        # renders real photographs through the same chain
        "component_settings": {k: v for k, v in settings.items() if k in net.heads} or None,
        "dropped_heads": dropped,
        "dataset": dataset_entry(context),
        "training": context.config,
        "metrics": {
            "monitor": result.monitor,
            "value": result.value,  # the run's best; see "best"
            "best": Path(result.best or "").name or None,
            "global_step": ck.global_step,  # of the exported weights
            "epoch": ck.epoch,
        },
        "checkpoint": {"path": str(ckpt.resolve()), "sha256": sha256_file(ckpt)},
    }


def dataset_entry(context: TrainingContext) -> dict | None:
    """Which dataset trained the model (its directory, config hash, manifest sha256)."""
    manifest = context.manifest
    if manifest is None:
        return None
    return {
        "dir": context.run.data.dir,
        "config_hash": manifest.config_hash,
        "manifest_sha256": context.manifest_sha256,
        "total_samples": manifest.total_samples,
    }


def write_card(tmp: Path, card: ModelCard) -> ModelCard:
    """``card.md``, then ``card.json`` with the sha256 of every file it describes, then
    ``SHA256SUMS`` over all four files; returns the card with its ``files`` entry."""
    (tmp / "card.md").write_text(card_markdown(card))
    card = card.with_entries(
        files={n: sha256_file(tmp / n) for n in ("model.onnx", "weights.safetensors", "card.md")}
    )
    (tmp / "card.json").write_text(card.to_json())
    sums = "".join(
        f"{sha256_file(tmp / n)}  {n}\n"
        for n in ("card.json", "card.md", "model.onnx", "weights.safetensors")
    )
    (tmp / "SHA256SUMS").write_text(sums)
    return card


def _reduce(
    tmp: Path, card: ModelCard, precision: str, min_psnr: float, device: DeviceCheck
) -> dict:
    """Replace ``tmp/model.onnx`` by its ``precision`` version; returns the device figures."""
    fp32, small = tmp / ".fp32", tmp / ".reduced"
    for d in (fp32, small):
        d.mkdir()
        (d / "card.json").write_text(card.to_json())
    os.replace(tmp / "model.onnx", fp32 / "model.onnx")
    try:
        reduce(
            fp32 / "model.onnx",
            small / "model.onnx",
            precision,
            lambda: device.calibration_inputs(card),
        )
        figures = device.figures(fp32, small, precision)
        worst = min(figures["psnr_vs_fp32"].values())
        if not worst >= min_psnr:
            raise ExportError(
                f"precision = {precision}: the composed output is only {worst:.1f} dB from the "
                f"float32 model's (min_device_psnr = {min_psnr:g}); nothing was written"
            )
        os.replace(small / "model.onnx", tmp / "model.onnx")
    finally:
        shutil.rmtree(fp32, ignore_errors=True)
        shutil.rmtree(small, ignore_errors=True)
    return figures


def _device_line(dev: dict) -> str:
    """The card.md line of a reduced graph's figures (the card's ``device`` entry)."""
    return (
        f"- device graph: {dev['precision']}, "
        f"{dev['bytes'] / 2**20:.1f} MiB (float32 "
        f"{dev['fp32_bytes'] / 2**20:.1f} MiB), "
        f"{dev['ms_per_megapixel']:.0f} ms/MP here (float32 "
        f"{dev['fp32_ms_per_megapixel']:.0f}), composed output vs float32: "
        + ", ".join(f"ISO {k} {v:.1f} dB" for k, v in dev["psnr_vs_fp32"].items())
    )


def card_markdown(card: ModelCard) -> str:
    """``card.md``: the card for people, one line per fact."""
    m, nm, arch = card.metrics, card.noise_model, card.model
    lines = [
        f"# residual-train model ({', '.join(card.components)})",
        "",
        f"- components / outputs: {', '.join(card.outputs)} (residuals; `x + R` corrects that component)",
        f"- input: `{card.layout}`, {card.channels} channels, {card.scale}",
        f"- architecture: {arch.get('arch')} {json.dumps({k: v for k, v in arch.items() if k != 'arch'})}",
        f"- validation: {m['monitor']} = {m['value']} (the run's best: {m['best']});"
        f" weights of step {m['global_step']}",
        f"- sensor noise model: ISO {nm.iso[0]}..{nm.iso[-1]}"
        if nm
        else "- sensor noise model: unknown",
        f"- dataset config hash: {(card.dataset or {}).get('config_hash')}",
        f"- ONNX parity: max |diff| {card.parity['max_abs_diff']:.2e} (tolerance {card.parity['tolerance']:g})",
        *([_device_line(card.device)] if card.device else []),
        f"- package {card.package_version}, torch {card.torch_version}",
        "",
        "Compose at strengths with `python -m residual_train.deploy` (docs/design.md §4).",
    ]
    return "\n".join(lines) + "\n"


def device_check(cfg: dict) -> DeviceCheck | None:
    """The config's ``device`` (``_target_``), built only for a reduced precision."""
    if str(cfg["precision"]) == "fp32" or not cfg["device"]:
        return None
    from hydra.utils import instantiate

    return instantiate(cfg["device"])


def run(cfg: dict) -> dict:
    try:
        card = export(
            cfg["ckpt"],
            cfg["out_dir"],
            cfg["opset"],
            cfg["tol"],
            str(cfg["precision"]),
            cfg["min_device_psnr"],
            cfg["heads"],
            device_check(cfg),
        )
    except ExportError as e:  # the graph is wrong, not the input: exit 1, one line
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    return {
        "out_dir": str(cfg["out_dir"]),
        "parity_max_abs_diff": card.parity["max_abs_diff"],
        **({"device": card.device} if card.device else {}),
        "files": card.files,
        **(
            {
                "warning": f"no training config at {run_config_path(str(cfg['ckpt']))} (the "
                "run's folder is read two levels above ckpt): the card has no sensor noise "
                "model or lens, which evaluate, deploy and serve need; export the checkpoint "
                "from its run's checkpoints/ folder"
            }
            if card["training"] is None
            else {}
        ),
    }


def main() -> None:
    run_app(APPS, "export", run)


if __name__ == "__main__":
    main()
