"""The renderer of :mod:`data_gen.render` in torch, batched, on any device.

Same physics and the same random draws as the numpy reference (crop, exposure, the
per-sample PSF of the bank by FFT, mosaic, one shared noise realisation, clipping at
white). The sample draws (:func:`data_gen.render.draw_sample`) and the standard normals
still come from each sample's own numpy generator, so a shard holds the same samples on
any device; what differs is the FFT's float32 rounding (≈ 1e-7 relative against scipy on
a CPU; cuFFT on a GPU rounds differently again). Shards are byte-identical for the same
config on the same kind of device, not across devices or renderers.

Arrays: float32 ``(B, C, P, P)``, 0 = black level, 1 = white level.
"""

from __future__ import annotations

import numpy as np
import torch

from data_gen.cfa import mosaic_packed
from data_gen.noise import NoiseModel
from data_gen.optics import PSFBank
from data_gen.render import (
    BlurOperator,
    SampleSpec,
    batch_noise_model,
    fill_crops,
    noise_draws,
)


class TorchBlurOperator(BlurOperator):
    """:class:`data_gen.render.BlurOperator` (same buffer, sizes and valid region) with its
    FFTs in torch on ``device``; each PSF's transform is computed once and stays there."""

    def __init__(self, bank: PSFBank, patch_size: int, device: str | torch.device = "cpu"):
        super().__init__(bank, patch_size)
        self.device = torch.device(device)

    def kernel_fft(self, index: int) -> torch.Tensor:
        if index not in self._kernels:
            psf = torch.from_numpy(np.ascontiguousarray(self.bank.psfs[index], np.float32))
            self._kernels[index] = torch.fft.rfft2(psf.to(self.device), s=(self.n, self.n))
        return self._kernels[index]

    def __call__(self, x: torch.Tensor, psf_index: np.ndarray) -> torch.Tensor:
        lo, hi = self.k - 1, self.k - 1 + self.p
        spec = torch.fft.rfft2(x)
        idx = [int(i) for i in np.asarray(psf_index)]
        if all(i == idx[0] for i in idx):
            spec *= self.kernel_fft(idx[0])
        else:
            spec *= torch.stack([self.kernel_fft(i) for i in idx])
        y = torch.fft.irfft2(spec, s=(self.n, self.n))
        return y[:, :, lo:hi, lo:hi].contiguous()


def render_batch_torch(
    specs: list[SampleSpec],
    blur: TorchBlurOperator,
    cfa: str | None = None,
    normals: str = "host",
) -> dict[str, np.ndarray]:
    """:func:`data_gen.render.render_batch` on ``blur.device``; returns numpy arrays.

    ``normals='host'``: each sample's standard normals from its own numpy generator (the
    reference's noise). ``'device'``: the batch's normals in one call of a torch generator
    on the device seeded with the first sample's seed (the batch size is part of the
    generation config, so a shard stays reproducible on the same kind of device)."""
    c = specs[0].frame.pixels.shape[0]
    buf = fill_crops(specs, blur.buffer(len(specs), c), blur.p, blur.k)
    stored = (len(specs), 4, blur.p // 2, blur.p // 2) if cfa else (len(specs), c, blur.p, blur.p)
    if normals == "device":
        noise_model = batch_noise_model([s.noise for s in specs], cfa)
        normal = device_normals(stored, specs[0].seed, blur.device)
    else:
        noise_model, host = noise_draws(specs, stored, cfa)
        normal = torch.from_numpy(host).to(blur.device)
    out = render_tensors(
        torch.from_numpy(buf).to(blur.device),
        np.array([s.psf_index for s in specs]),
        noise_model,
        normal,
        blur,
        cfa,
    )
    return {k: v.cpu().numpy() for k, v in out.items()}


def device_normals(shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    """Standard normals ``shape`` float32 from a torch generator on ``device`` seeded with
    ``seed`` (64-bit; reproducible on the same kind of device)."""
    g = torch.Generator(device=device).manual_seed(seed & (2**63 - 1))
    return torch.randn(shape, generator=g, device=device)


def render_tensors(
    x: torch.Tensor,
    psf_index: np.ndarray,
    noise_model: NoiseModel,
    normal: torch.Tensor,
    blur: TorchBlurOperator,
    cfa: str | None = None,
) -> dict[str, torch.Tensor]:
    """The physics on the device: ``x`` is the FFT buffer ``(B, C, N, N)`` with each
    sample's exposed crop in its top-left (:meth:`BlurOperator.buffer`); ``normal`` the
    standard normals of the stored patches. Returns ``clean``, ``blur``, ``noise``,
    ``noise_blur`` ``(B, C', P', P')`` on the device, clipped at white."""
    p, r = blur.p, blur.k // 2
    clean = x[:, :, r : r + p, r : r + p]
    blurred = blur(x, psf_index)
    if cfa is not None:
        clean, blurred = mosaic_packed(clean, cfa), mosaic_packed(blurred, cfa)
    noise = noise_model.sample(blurred, normal)
    out = {"clean": clean, "blur": blurred, "noise": clean + noise, "noise_blur": blurred + noise}
    return {k: v.clamp(max=1.0) for k, v in out.items()}
