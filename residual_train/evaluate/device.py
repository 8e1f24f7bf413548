"""What a reduced-precision export costs, measured by running it: int8's calibration batches
(photographs rendered through the card's lens and sensor, cut like deployment's tiles) and
the figures the card's ``device`` entry records -- size, speed (ms per megapixel on this
CPU) and the PSNR of the composed output (a = b = 1) of the reduced graph against the
float32 one on the photographs bundled with scikit-image.

:class:`DeviceCheck` is what ``python -m residual_train.release.export precision=fp16|int8``
is handed (``device._target_`` in ``conf/apps/export.yaml``): the release stage converts
graphs, this module runs them with the deployment code.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from residual_train.release.card import ModelCard


def calibration_inputs(card: ModelCard, n: int = 12, size: int = 96, seed: int = 0) -> list[dict]:
    """``x`` (and ``sigma``, ``field``) batches like the ones deployment feeds: crops of the
    builtin photographs rendered through the card's lens and sensor at its lowest, middle
    and highest ISO."""
    from data_gen.render import render_frame
    from residual_train.evaluate.images import load_images
    from residual_train.evaluate.run import card_bank

    bank = card_bank(card)
    table = card.sensor_noise()
    isos = [float(table.iso[i]) for i in (0, len(table.iso) // 2, -1)]
    rng = np.random.default_rng(seed)
    out = []
    for i, (_, img) in enumerate(load_images("builtin")):
        for iso in isos:
            noise = table.at(iso)
            r = render_frame(img, bank, noise, np.random.default_rng([seed, i, int(iso)]))
            x = r["noise_blur"]
            for _ in range(max(1, n // 15)):
                y0 = int(rng.integers(0, x.shape[1] - size))
                x0 = int(rng.integers(0, x.shape[2] - size))
                crop = np.ascontiguousarray(x[None, :, y0 : y0 + size, x0 : x0 + size])
                item = {"x": crop}
                if "sigma" in card.inputs:
                    item["sigma"] = noise.std(crop).astype(np.float32)
                if card.field is not None:  # the crop's positions in the frame
                    idx = r["psf_index"][y0 : y0 + size, x0 : x0 + size]
                    item["field"] = card.field.maps(idx)[None]
                out.append(item)
    return out


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
    isos = list(ref.card.sensor_noise().range)
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


class DeviceCheck:
    """The export's measurements of a reduced graph (``residual_train.release.export``)."""

    def calibration_inputs(self, card: ModelCard) -> list[dict]:
        return calibration_inputs(card)

    def figures(self, fp32_dir: Path, reduced_dir: Path, precision: str) -> dict:
        return device_figures(fp32_dir, reduced_dir, precision)
