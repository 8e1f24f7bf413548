"""The interface every backbone implements: padding, conditioning and heads."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_gen.core.errors import InputError
from residual_train.models.field import field_maps as maps_of


def fft_correlate(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, w[:, None], groups=C)`` ('valid' cross-correlation, one ``(K, K)``
    kernel per channel) by FFT: ``x`` ``(B, C, H, W)``, ``w`` ``(C, K, K)`` -> ``(B, C, H −
    K + 1, W − K + 1)``; equal to float32 rounding, differentiable in both."""
    k = w.shape[-1]
    h, wd = x.shape[-2:]
    spec = torch.fft.rfft2(x) * torch.fft.rfft2(w.flip(-2, -1), s=(h, wd))
    y = torch.fft.irfft2(spec, s=(h, wd))  # circular wrap-around only reaches the first K−1
    return y[..., k - 1 :, k - 1 :]


class ResidualNet(nn.Module):
    """Base: pads the input to a multiple of ``2**levels``, runs :meth:`trunk`, applies heads.

    ``channels``: image channels C; ``sigma_map``: an extra C-channel noise-level map is
    concatenated to the input (conditioning). ``deconv`` (odd kernel size, 0 = off): a
    learnable linear deconvolution path, one ``deconv × deconv`` kernel per channel
    (initialised by :meth:`init_deconv` as the Wiener inverse of the training lens's PSF);
    its output ``L⊛x`` is a further input of the trunk, and the blur head predicts a
    correction to ``L⊛x − x`` (``deconv_base='input'``) or to ``L⊛d − d`` with the
    network's own denoised image ``d = x + R̂_n`` (``'denoised'``: the linear inverse then
    amplifies no noise; ``R̂_n`` is not trained through this path). ``normalize='sigma'``
    makes the network equivariant in the noise level: the trunk reads ``x/σ`` (and
    ``L⊛x/σ``, ``log σ``) so noise has about unit scale at every ISO and brightness, and the
    heads predict in units of ``σ`` (``R̂ = σ·h``). ``field_kernels`` (``K``, 0 = off; needs
    ``deconv``): the deconvolution path knows where it is — the Wiener inverse of the mean PSF
    plus ``K`` eigen-kernels mixed per pixel by the ``field`` maps (:mod:`.field`; the mixing
    weights of the ``field_positions`` bank PSFs are the buffer ``field_table``, set with the
    kernels by :meth:`init_field`); with ``field_maps`` the trunk reads the maps too.
    Subclasses set ``self.levels`` and
    ``self.features`` and the modules of the U-shaped :meth:`trunk` (``stem``, per level
    ``enc``/``down``/``up``/``dec``, and ``mid``), or override ``trunk``.
    """

    levels: int
    features: int

    def __init__(
        self,
        channels: int,
        heads: list[str],
        sigma_map: bool = False,
        deconv: int = 0,
        deconv_balance: float = 1e-3,
        deconv_base: str = "input",
        normalize: str = "none",
        deconv_impl: str = "auto",
        field_kernels: int = 0,
        field_positions: int = 0,
        field_maps: bool = True,
    ) -> None:
        super().__init__()
        self.channels, self.heads, self.sigma_map = channels, list(heads), sigma_map
        if deconv < 0 or (deconv and deconv % 2 == 0):
            raise InputError(f"model.deconv = {deconv}: an odd kernel size, or 0 for none")
        self.deconv_size, self.deconv_balance = int(deconv), float(deconv_balance)
        if deconv_base not in ("input", "denoised"):
            raise InputError(f"model.deconv_base = {deconv_base!r}: use input or denoised")
        if deconv_base == "denoised" and not {"blur", "noise"} <= set(heads):
            raise InputError("model.deconv_base = denoised needs both a blur and a noise head")
        self.deconv_base = deconv_base
        if deconv_impl not in ("auto", "conv", "fft"):
            raise InputError(f"model.deconv_impl = {deconv_impl!r}: use auto, conv or fft")
        # in training, a large per-channel kernel is much faster by FFT (cuDNN's grouped
        # direct kernel uses no tensor cores); evaluation and exported graphs use the conv
        self.deconv_fft = deconv_impl == "fft" or (deconv_impl == "auto" and deconv >= 11)
        if normalize not in ("none", "sigma"):
            raise InputError(f"model.normalize = {normalize!r}: use none or sigma")
        if normalize == "sigma" and not sigma_map:
            raise InputError(
                "model.normalize = sigma needs the noise-level map: data.sigma_map=true"
            )
        self.normalize = normalize
        self.field_kernels, self.field_positions = int(field_kernels), int(field_positions)
        if self.field_kernels:
            if self.field_kernels < 0 or not deconv:
                raise InputError(
                    f"model.field_kernels = {field_kernels}: a number of eigen-kernels >= 0 of "
                    "the deconvolution path, which needs model.deconv (an odd kernel size)"
                )
            if self.field_positions < 1:
                raise InputError(
                    f"model.field_positions = {field_positions}: the number of PSFs in the "
                    "training lens's bank (set by training from the dataset)"
                )
        self.field_trunk = bool(field_maps) and self.field_kernels > 0
        self.in_channels = channels * (1 + bool(sigma_map) + bool(deconv))
        self.in_channels += self.field_kernels if self.field_trunk else 0
        if deconv:
            self.deconv = nn.Conv2d(channels, channels, deconv, groups=channels, bias=False)
            with torch.no_grad():  # identity until init_deconv
                self.deconv.weight.zero_()
                self.deconv.weight[:, :, deconv // 2, deconv // 2] = 1.0
        if self.field_kernels:  # zero eigen-kernels until init_field: the mean-PSF path
            k = self.field_kernels
            self.deconv_field = nn.Parameter(torch.zeros(channels, k, deconv, deconv))
            self.register_buffer("field_table", torch.zeros(self.field_positions, k))

    def init_deconv(self, psf) -> None:
        """Set the deconvolution path to the Wiener inverse of ``psf`` ``(C, K, K)``."""
        import numpy as np

        from data_gen.optics import inverse_filter

        g = inverse_filter(np.asarray(psf, np.float64), self.deconv_size, self.deconv_balance)
        with torch.no_grad():  # torch convolutions correlate: flip the kernel
            self.deconv.weight.copy_(torch.from_numpy(g[:, None, ::-1, ::-1].copy()))

    def init_field(self, psfs) -> None:
        """Set the deconvolution path to the Wiener inverse of the mean of the bank ``psfs``
        ``(N, C, K, K)`` and its eigen-kernels, and the mixing weights of every bank PSF
        (:func:`.field.eigen_kernels`)."""
        from residual_train.models.field import eigen_kernels

        p = np.asarray(psfs)
        if p.ndim != 4 or len(p) != self.field_positions:
            raise InputError(
                f"model.field_positions = {self.field_positions}: the PSF bank has shape "
                f"{p.shape}, expected ({self.field_positions}, C, K, K)"
            )
        base, eigen, table = eigen_kernels(
            p, self.deconv_size, self.deconv_balance, self.field_kernels
        )
        with torch.no_grad():  # torch convolutions correlate: flip the kernels
            self.deconv.weight.copy_(torch.from_numpy(base[:, None, ::-1, ::-1].copy()))
            eig = np.ascontiguousarray(eigen.transpose(1, 0, 2, 3)[..., ::-1, ::-1])
            self.deconv_field.copy_(torch.from_numpy(eig))
            self.field_table.copy_(torch.from_numpy(table))

    def field_of(self, psf_index: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``(B, K, h, w)`` maps of a batch: constant ones of one bank PSF per sample
        (``psf_index`` ``(B,)``: a patch rendered with one PSF), or per pixel of an index map
        ``(B, h, w)`` (a patch rendered with a PSF per block, ``psf_per=block``)."""
        idx = psf_index.long()
        if idx.ndim == 3:
            if tuple(idx.shape[-2:]) != (h, w):
                raise InputError(f"psf_index map {tuple(idx.shape[-2:])}, patches {(h, w)}")
            return maps_of(self.field_table, idx)
        return self.field_table[idx][:, :, None, None].expand(-1, -1, h, w)

    def _make_heads(self) -> None:
        self.out = nn.ModuleDict(
            {h: nn.Conv2d(self.features, self.channels, 3, padding=1) for h in self.heads}
        )
        for conv in self.out.values():  # start from "no correction"
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def trunk(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder, bottleneck, decoder with additive skips: ``(B, features, H, W)``."""
        x = self.stem(z)
        skips = []
        for enc, down in zip(self.enc, self.down, strict=True):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.mid(x)
        for i in reversed(range(self.levels)):
            x = self.dec[i](self.up[i](x) + skips[i])  # additive skip
        return x

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None, field: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if self.sigma_map and sigma is None:
            raise ValueError("this model is conditioned on a noise-level map: pass sigma")
        if self.field_kernels and field is None:
            raise ValueError("this model's deconvolution knows where it is: pass field")
        # noise-level units: σ ≥ √B > 0 by the noise model; the floor guards B = 0
        s = sigma.clamp_min(1e-6) if self.normalize == "sigma" else None
        parts = [x / s if s is not None else x]
        if self.deconv_size:
            lx = self._deconvolve(x, field)
            parts.append(lx / s if s is not None else lx)
        if self.sigma_map:
            parts.append(torch.log(s) + 6.0 if s is not None else sigma)
        if self.field_trunk:
            parts.append(field.to(x.dtype))
        z = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        h, w = z.shape[-2:]
        m = 2**self.levels
        # always pad (possibly by 0): a branch on the size would be frozen by ONNX tracing;
        # replicate works for any size
        z = F.pad(z, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="replicate")
        f = self.trunk(z)
        out = {k: head(f)[..., :h, :w] for k, head in self.out.items()}
        if s is not None:
            out = {k: v * s for k, v in out.items()}
        if self.deconv_size and "blur" in out:
            if self.deconv_base == "denoised":
                d = x + out["noise"].detach()
                out["blur"] = out["blur"] + (self._deconvolve(d, field) - d)
            else:
                out["blur"] = out["blur"] + (lx - x)
        return out

    def _deconvolve(self, x: torch.Tensor, field: torch.Tensor | None = None) -> torch.Tensor:
        r = self.deconv_size // 2
        # always in float32, also under bf16 autocast: the inverse filter's gain would
        # amplify bf16's rounding of x (~1e-3 at mid-grey) above low-ISO sensor noise
        with torch.autocast(x.device.type, enabled=False):
            xp = F.pad(x.float(), (r, r, r, r), mode="replicate")
            if not self.field_kernels:
                if self.training and self.deconv_fft:
                    return fft_correlate(xp, self.deconv.weight[:, 0])
                return self.deconv(xp)
            # ḡ and the K eigen-kernels as one set of 1 + K kernels per channel; the
            # eigen-kernels are kept at zero sum (every bank inverse has the same DC gain, so
            # the position-dependent part changes no brightness: learnt freely, their sums
            # drifted by ±0.3 and the path's brightness by tens of % per position)
            c, k, s = self.channels, self.field_kernels, self.deconv_size
            u = self.deconv_field - self.deconv_field.mean(dim=(-2, -1), keepdim=True)
            w = torch.cat([self.deconv.weight, u], dim=1)  # (C, 1 + K, S, S)
            if self.training and self.deconv_fft:
                y = fft_correlate(xp[:, :, None], w)  # (B, C, 1 + K, H, W)
            else:
                y = F.conv2d(xp, w.reshape(c * (1 + k), 1, s, s), groups=c)
                y = y.unflatten(1, (c, 1 + k))
            mix = field.float()[:, None]  # (B, 1, K, H, W)
            return y[:, :, 0] + (y[:, :, 1:] * mix).sum(dim=2)

    def restore(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None, field: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``x + residual`` per head (the final skip of the method's network)."""
        return {k: x + r for k, r in self(x, sigma, field).items()}
