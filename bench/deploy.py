"""Deployment speed: network inference vs. recomposition from saved maps.

(1) network megapixels/s, onnxruntime and torch on the CPU, default dual-head model,
tiled (256 px, 64 overlap); (2) recompose time for a 24-megapixel RGB image from maps
in memory (the fused kernel a slider calls); (3) a plain memory copy of the same three
arrays (the physical limit) and the ratios. Targets: recompose >= 1000x faster than
re-running the network, and within 2x of the copy. Saves ``bench/results/deploy.json``.

    python bench/deploy.py [--mp 24] [--net-size 1024]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save
from data_gen.noise import NoiseModel
from residual_train.deploy import DeployedModel
from residual_train.deploy.compose import compose_blur_noise
from residual_train.models import build_model
from residual_train.release.export import OnnxWrapper

DEFAULT_MODEL = {"arch": "unet", "heads": ["blur", "noise"], "width": 32, "depth": 3, "blocks": 2}


def export_default(d: Path) -> Path:
    """A default-size model (untrained weights: speed does not depend on them)."""
    import json
    import warnings

    from safetensors.torch import save_file

    net = build_model(DEFAULT_MODEL, 3).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            OnnxWrapper(net),
            (torch.zeros(1, 3, 37, 53),),
            str(d / "model.onnx"),
            input_names=["x"],
            output_names=["R_blur", "R_noise"],
            dynamic_axes={n: {0: "b", 2: "h", 3: "w"} for n in ("x", "R_blur", "R_noise")},
            opset_version=17,
            dynamo=False,
        )
    save_file(net.state_dict(), str(d / "weights.safetensors"))
    (d / "card.json").write_text(
        json.dumps(
            {
                "components": ["blur", "noise"],
                "channels": 3,
                "inputs": ["x"],
                "model": DEFAULT_MODEL,
                "noise_model": {
                    "iso": [100, 6400],
                    "a": [[1e-4] * 3, [6.4e-3] * 3],
                    "b": [[1e-7] * 3, [6.4e-6] * 3],
                },
            }
        )
    )
    return d


def best_of(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mp", type=float, default=24.0, help="recompose image size, megapixels")
    ap.add_argument("--net-size", type=int, default=1024, help="network test image side, px")
    args = ap.parse_args()
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = export_default(Path(tmp))
        x = np.random.default_rng(0).random((3, args.net_size, args.net_size), dtype=np.float32)
        mp = args.net_size**2 / 1e6
        for backend in ("onnx", "torch"):
            m = DeployedModel(d, backend)
            rows[f"network_{backend}_mp_per_s"] = mp / best_of(lambda m=m: m.predict(x), 1)
    h = 4000
    w = int(args.mp * 1e6 / h)
    rng = np.random.default_rng(1)
    arrays = [rng.random((3, h, w), dtype=np.float32) for _ in range(3)]
    out = np.empty_like(arrays[0])
    noise = NoiseModel(np.full(3, 1e-3, np.float32), np.full(3, 1e-6, np.float32))
    t_comp = best_of(lambda: compose_blur_noise(*arrays, 0.7, 0.4, noise, out=out), 5)
    copies = [np.empty_like(a) for a in arrays]
    t_copy = best_of(lambda: [np.copyto(c, a) for c, a in zip(copies, arrays, strict=True)], 5)
    mp24 = h * w / 1e6
    net_time = mp24 / rows["network_onnx_mp_per_s"]
    rows.update(
        {
            "recompose_seconds_24mp": t_comp,
            "memcopy_seconds_same_arrays": t_copy,
            "network_seconds_24mp_onnx": net_time,
            "speedup_recompose_vs_network": net_time / t_comp,
            "recompose_over_memcopy": t_comp / t_copy,
        }
    )
    for k, v in rows.items():
        print(f"{k:34s} {v:12.4f}")
    ok = rows["speedup_recompose_vs_network"] >= 1000 and rows["recompose_over_memcopy"] <= 2
    print(
        f"targets (>= 1000x network, <= 2x memcopy): {'met' if ok else 'NOT met'}; "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"saved {save('deploy', {'image_mp': mp24, 'model': DEFAULT_MODEL, 'results': rows, 'targets_met': ok})}"
    )


if __name__ == "__main__":
    main()
