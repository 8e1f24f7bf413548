"""``python -m residual_train.export ckpt=PATH out_dir=DIR``: checkpoint -> deployable files.

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

import numpy as np
import torch

from data_gen import __version__
from data_gen.cli import run_app
from data_gen.errors import InputError, require
from data_gen.paths import APPS, filled_atomically, require_new_dir
from data_gen.sensor import build_sensor
from data_gen.shards import read_mapping, sha256_file
from data_gen.values import integer, number
from residual_train.models import ResidualNet, build_model
from residual_train.models.weights import load_weights

CARD_FORMAT = "residual-train-model/1"
PARITY_SIZES = ((1, 37, 53), (2, 64, 64), (1, 100, 131), (1, 128, 96))


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

    def forward(self, *inputs: torch.Tensor):
        kw = dict(zip(self.names, inputs, strict=True))
        out = self.net(kw["x"], kw.get("sigma"), kw.get("field"))
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


def load_checkpoint(path: str | Path) -> tuple[ResidualNet, dict, dict]:
    """Net (eval mode), its hyper-parameters and the raw checkpoint (loaded without pickle)."""
    p = Path(path)
    require(p.is_file(), f"ckpt = {str(path)!r}: file does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"ckpt = {str(path)!r}: not a loadable checkpoint ({e})") from None
    require(isinstance(ck, dict), f"{p}: not a residual-train checkpoint (not a mapping)")
    hp = ck.get("hyper_parameters") or {}
    require(
        "model" in hp and "channels" in hp,
        f"{p}: not a residual-train checkpoint (hyper_parameters lack model/channels)",
    )
    require(
        isinstance(ck.get("state_dict"), dict),
        f"{p}: not a residual-train checkpoint (it holds no state_dict: no weights)",
    )
    net = build_model(dict(hp["model"]), int(hp["channels"]))
    state = {k[4:]: v for k, v in ck["state_dict"].items() if k.startswith("net.")}
    load_weights(
        net, state, f"{p}: its weights do not fit the network its hyper_parameters describe"
    )
    return net.eval(), hp, ck


def noise_table(
    sensor_cfg: dict | None, channels: int, points: int = 17, layout: str = "rgb"
) -> dict | None:
    """The training sensor's ``σ²(v) = a·v + b`` as a table over ISO (a, b are linear in
    ISO between the listed points, exactly so for the raw model). ``layout='rggb'``: the
    colour model's values per packed plane R, Gr, Gb, B."""
    if not sensor_cfg:
        return None
    if layout == "rggb":
        from data_gen.cfa import PLANE_COLOUR

        table = noise_table(sensor_cfg, 3, points)
        assert table is not None
        for k in ("a", "b"):
            table[k] = [[row[c] for c in PLANE_COLOUR] for row in table[k]]
        return table
    sensor = build_sensor(sensor_cfg, channels)
    lo, hi = sensor.iso.range
    isos = sorted({*(sensor.iso.values or []), *np.geomspace(lo, hi, points).round(3).tolist()})
    if hasattr(sensor, "isos"):  # darktable: its own knots inside the range
        isos = sorted({*isos, *(float(i) for i in sensor.isos if lo <= i <= hi)})
    rows = [sensor.params(i) for i in isos]
    return {
        "iso": isos,
        "a": [r.a.tolist() for r in rows],
        "b": [r.b.tolist() for r in rows],
        "ob": sensor.ob,
        "white": sensor.white,
        "source": sensor_cfg,
    }


def _training_context(ckpt: Path) -> tuple[dict | None, dict | None, dict | None, dict | None]:
    """(training config, result, dataset config, manifest) found beside the checkpoint."""
    run_dir = ckpt.parent.parent
    cfg = (
        read_mapping(run_dir / "config.yaml", "training config")
        if (run_dir / "config.yaml").is_file()
        else None
    )
    res = (
        read_mapping(run_dir / "result.json", "training result")
        if (run_dir / "result.json").is_file()
        else None
    )
    data_cfg = manifest = None
    if cfg and (cfg.get("data") or {}).get("dir"):
        d = Path(cfg["data"]["dir"])
        if (d / "config.yaml").is_file():
            data_cfg = read_mapping(d / "config.yaml", "dataset config")
        if (d / "manifest.json").is_file():
            manifest = read_mapping(d / "manifest.json", "manifest")
            manifest["_sha256"] = sha256_file(d / "manifest.json")
    return cfg, res, data_cfg, manifest


def rendered_components(data_cfg: dict | None, train_cfg: dict | None) -> dict | None:
    """The ``component`` settings the training data was rendered with: the dataset's, updated
    by an on-the-fly ``generator`` override (None for blur + noise data)."""
    settings = dict((data_cfg or {}).get("component") or {})
    fly = ((train_cfg or {}).get("data") or {}).get("onthefly") or {}
    extra = (fly.get("generator") or {}).get("component") if fly.get("enabled") else None
    for name, v in (extra or {}).items():
        settings[name] = {**(settings.get(name) or {}), **(v or {})}
    return settings or None


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
) -> dict:
    """Export ``ckpt`` into ``out_dir`` (must not hold files yet); returns the card.

    ``heads``: the heads to keep (default: all). The others leave the graph and the card,
    which records them as ``dropped_heads``: their components are neither corrected nor
    rendered by the evaluation (the kept heads were trained on inputs holding them too).

    ``precision='fp16'|'int8'``: ``model.onnx`` is the reduced graph (the float32 one is
    parity-checked against PyTorch first); the card's ``device`` entry holds its size,
    speed and composed-output PSNR against float32, which must reach ``min_device_psnr``.
    """
    from residual_train.quantize import PRECISIONS

    require(precision in PRECISIONS, f"precision = {precision!r}: use one of {PRECISIONS}")
    from safetensors.torch import save_file

    ckpt, out_dir = Path(ckpt), Path(out_dir)
    integer(opset, "opset", 17)
    number(tol, "tol", lo=0)
    number(min_device_psnr, "min_device_psnr")
    require_new_dir(out_dir)
    net, hp, raw = load_checkpoint(ckpt)
    dropped = keep_heads(net, heads)
    hp = {**hp, "model": {**hp["model"], "heads": list(net.heads)}}
    train_cfg, result, data_cfg, manifest = _training_context(ckpt)
    with filled_atomically(out_dir) as tmp:
        onnx_path = tmp / "model.onnx"
        c = net.channels
        # trace at a size that needs padding, so no shape-dependent path is frozen
        names = input_names(net)
        args = tuple(
            torch.zeros(1, net.field_kernels if n == "field" else c, 37, 53) for n in names
        )
        outs = [f"R_{h}" for h in net.heads]
        dyn = {n: {0: "batch", 2: "height", 3: "width"} for n in [*names, *outs]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                OnnxWrapper(net),
                args,
                str(onnx_path),
                input_names=names,
                output_names=outs,
                dynamic_axes=dyn,
                opset_version=opset,
                dynamo=False,
            )
        parity = check_parity(onnx_path, net, tol)
        save_file(
            {k: v.contiguous() for k, v in net.state_dict().items()},
            str(tmp / "weights.safetensors"),
            metadata={"format": CARD_FORMAT},
        )
        card = {
            "format": CARD_FORMAT,
            "components": list(net.heads),
            "inputs": names,
            "outputs": outs,
            "layout": (data_cfg or {}).get("layout", "rgb"),
            "cfa": (data_cfg or {}).get("cfa")
            if (data_cfg or {}).get("layout") == "rggb"
            else None,
            "channels": c,
            "scale": "linear; 0 = black level, 1 = white level",
            "stride": 2**net.levels,
            "model": dict(hp["model"]),
            "field": field_card(net),
            "noise_model": noise_table(
                (data_cfg or {}).get("sensor"), c, layout=(data_cfg or {}).get("layout", "rgb")
            ),
            "lens": (data_cfg or {}).get("lens"),
            # the settings each component was rendered with (their ranges): evaluation
            # renders real photographs through the same chain
            "component_settings": {
                k: v
                for k, v in (rendered_components(data_cfg, train_cfg) or {}).items()
                if k in net.heads
            }
            or None,
            "dropped_heads": dropped,
            "dataset": None
            if manifest is None
            else {
                "dir": (train_cfg or {}).get("data", {}).get("dir"),
                "config_hash": manifest.get("config_hash"),
                "manifest_sha256": manifest["_sha256"],
                "total_samples": manifest.get("total_samples"),
            },
            "training": train_cfg,
            "metrics": {
                "monitor": (result or {}).get("monitor"),
                "value": (result or {}).get("value"),  # the run's best; see "best"
                "best": Path((result or {}).get("best") or "").name or None,
                "global_step": raw.get("global_step"),  # of the exported weights
                "epoch": raw.get("epoch"),
            },
            "checkpoint": {"path": str(ckpt.resolve()), "sha256": sha256_file(ckpt)},
            "parity": parity,
            "package_version": __version__,
            "torch_version": torch.__version__,
        }
        card["precision"] = precision
        if precision != "fp32":
            card["device"] = _reduce(tmp, card, precision, min_device_psnr)
        (tmp / "card.md").write_text(card_markdown(card))
        card["files"] = {
            n: sha256_file(tmp / n) for n in ("model.onnx", "weights.safetensors", "card.md")
        }
        (tmp / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
        sums = "".join(
            f"{sha256_file(tmp / n)}  {n}\n"
            for n in ("card.json", "card.md", "model.onnx", "weights.safetensors")
        )
        (tmp / "SHA256SUMS").write_text(sums)
    return card


def _reduce(tmp: Path, card: dict, precision: str, min_psnr: float) -> dict:
    """Replace ``tmp/model.onnx`` by its ``precision`` version; returns the device figures."""
    from residual_train.quantize import device_figures, reduce

    fp32, small = tmp / ".fp32", tmp / ".reduced"
    for d in (fp32, small):
        d.mkdir()
        (d / "card.json").write_text(json.dumps(card, default=str))
    os.replace(tmp / "model.onnx", fp32 / "model.onnx")
    try:
        reduce(fp32 / "model.onnx", small / "model.onnx", precision, card)
        figures = device_figures(fp32, small, precision)
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


def card_markdown(card: dict) -> str:
    m = card["metrics"]
    nm = card.get("noise_model") or {}
    lines = [
        f"# residual-train model ({', '.join(card['components'])})",
        "",
        f"- components / outputs: {', '.join(card['outputs'])} (residuals; `x + R` corrects that component)",
        f"- input: `{card['layout']}`, {card['channels']} channels, {card['scale']}",
        f"- architecture: {card['model'].get('arch')} {json.dumps({k: v for k, v in card['model'].items() if k != 'arch'})}",
        f"- validation: {m.get('monitor')} = {m.get('value')} (the run's best: {m.get('best')});"
        f" weights of step {m.get('global_step')}",
        f"- sensor noise model: ISO {nm.get('iso', ['?'])[0]}..{nm.get('iso', ['?'])[-1]}"
        if nm
        else "- sensor noise model: unknown",
        f"- dataset config hash: {(card.get('dataset') or {}).get('config_hash')}",
        f"- ONNX parity: max |diff| {card['parity']['max_abs_diff']:.2e} (tolerance {card['parity']['tolerance']:g})",
        *(
            [
                f"- device graph: {card['device']['precision']}, "
                f"{card['device']['bytes'] / 2**20:.1f} MiB (float32 "
                f"{card['device']['fp32_bytes'] / 2**20:.1f} MiB), "
                f"{card['device']['ms_per_megapixel']:.0f} ms/MP here (float32 "
                f"{card['device']['fp32_ms_per_megapixel']:.0f}), composed output vs float32: "
                + ", ".join(
                    f"ISO {k} {v:.1f} dB" for k, v in card["device"]["psnr_vs_fp32"].items()
                )
            ]
            if card.get("device")
            else []
        ),
        f"- package {card['package_version']}, torch {card['torch_version']}",
        "",
        "Compose at strengths with `python -m residual_train.deploy` (docs/design.md §4).",
    ]
    return "\n".join(lines) + "\n"


def run(cfg: dict) -> dict:
    try:
        card = export(
            cfg["ckpt"],
            cfg["out_dir"],
            cfg["opset"],
            cfg["tol"],
            str(cfg.get("precision", "fp32")),
            cfg.get("min_device_psnr", 30.0),
            cfg.get("heads"),
        )
    except ExportError as e:  # the graph is wrong, not the input: exit 1, one line
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    return {
        "out_dir": str(cfg["out_dir"]),
        "parity_max_abs_diff": card["parity"]["max_abs_diff"],
        **({"device": card["device"]} if card.get("device") else {}),
        "files": card["files"],
    }


def main() -> None:
    run_app(APPS, "export", run)


if __name__ == "__main__":
    main()
