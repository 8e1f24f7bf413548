"""Array backends of the batched renderer: numpy with scipy's FFT (the generator's default)
or torch on a CPU or GPU (the torch generator and on-the-fly training).

The batched chain (:mod:`data_gen.chain_batch`) and the components' ``apply_batch`` are
written once, with Python operators (which numpy arrays and torch tensors share) and the
few calls below. Images are float32 ``(..., H, W)``; spectra are the real FFTs of arrays
zero-padded to ``(n, n)`` with their data in the top-left corner.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.fft

from data_gen.core.errors import InputError, require


def fft_size(n: int) -> int:
    """Smallest size >= n that real FFTs handle fast (products of 2, 3, 5)."""
    return int(scipy.fft.next_fast_len(n, real=True))


class NumpyBackend:
    """numpy arrays, scipy's pocketfft with ``threads`` workers."""

    name = "numpy"
    reference = True  # the generator's reference renderer: its keys never enter the hash

    def __init__(self, threads: int = 1) -> None:
        self.threads = max(1, int(threads))

    @classmethod
    def create(cls, device, threads: int) -> NumpyBackend:
        return cls(threads)

    @staticmethod
    def check_device(device) -> None:
        """Nothing to check: the numpy renderer runs on the CPU whatever ``device`` says."""

    @staticmethod
    def batch_threads(threads: int) -> contextlib.AbstractContextManager:
        """The context a batch renders in (scipy's FFT takes its workers per call)."""
        return contextlib.nullcontext()

    CHUNK = 4  # samples rendered together: their FFTs and arrays stay in the CPU's caches

    def chunk(self, batch: int) -> int:
        """How many samples of a batch to render at a time."""
        return min(batch, self.CHUNK * self.threads)

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, np.float32)

    def numpy(self, x) -> np.ndarray:
        return x

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32)

    def padded(self, x: np.ndarray, n: int) -> np.ndarray:
        """``x`` ``(..., H, W)`` in the top-left of a zero ``(..., n, n)`` buffer."""
        buf = np.zeros((*x.shape[:-2], n, n), np.float32)
        buf[..., : x.shape[-2], : x.shape[-1]] = x
        return buf

    def rfft2(self, x: np.ndarray, n: int) -> np.ndarray:
        """Spectrum of ``x`` zero-padded to ``(n, n)`` (top-left)."""
        return scipy.fft.rfft2(x, s=(n, n), workers=self.threads)

    def kernel_spectrum(self, k: np.ndarray, n: int) -> np.ndarray:
        """Spectrum of kernels ``(..., K, K)`` placed in the top-left of ``(n, n)``."""
        return scipy.fft.rfft2(np.asarray(k, np.float32), s=(n, n), workers=1)

    def irfft2(self, spec: np.ndarray, n: int) -> np.ndarray:
        return scipy.fft.irfft2(spec, s=(n, n), workers=self.threads, overwrite_x=True)

    def take_same(self, circ: np.ndarray, r: int, w: int) -> np.ndarray:
        """The 'same'-aligned ``(..., w, w)`` of a circular convolution ``circ`` with a kernel
        of half side ``r`` placed in the top-left: output pixel ``j`` is ``circ[j + r]``. Only
        the pixels at least ``r`` from the border are a convolution of the image (the others
        would need pixels outside it); they are set to 0."""
        out = np.zeros((*circ.shape[:-2], w, w), np.float32)
        out[..., r : w - r, r : w - r] = circ[..., 2 * r : w, 2 * r : w]
        return out

    def exp(self, x):
        return np.exp(x)

    def cat(self, parts: list, axis: int):
        return np.concatenate(parts, axis)

    def stack(self, parts: list):
        return np.stack(parts)

    def rows(self, x: np.ndarray, index: np.ndarray) -> np.ndarray:
        """``x[index]`` along the first axis (``index`` numpy integers)."""
        return x[np.asarray(index, np.int64)]

    def index_add(self, out: np.ndarray, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``out[index[i]] += values[i]`` (repeated indices add up)."""
        for i, j in enumerate(np.asarray(index).tolist()):
            np.add(out[j], values[i], out=out[j])
        return out

    def clip(self, x, lo: float, hi: float):
        return np.clip(x, lo, hi)

    def minimum(self, x, v: float):
        return np.minimum(x, np.float32(v))


class TorchBackend:
    """torch tensors on ``device``."""

    name = "torch"
    reference = False  # rounds otherwise than scipy's FFT: renderer and device are hashed

    def __init__(self, device="cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)

    @classmethod
    def create(cls, device, threads: int) -> TorchBackend:
        return cls(device)

    @staticmethod
    def check_device(device) -> None:
        """``device`` names a torch device this machine has (``cpu``, ``cuda``, ``cuda:1``)."""
        import torch

        try:
            d = torch.device(str(device))
        except (RuntimeError, ValueError):
            raise InputError(
                f"device = {device!r}: not a torch device (cpu, cuda, cuda:N)"
            ) from None
        if d.type == "cuda":
            require(torch.cuda.is_available(), f"device = {device!r}: no CUDA GPU on this machine")
            require(
                d.index is None or d.index < torch.cuda.device_count(),
                f"device = {device!r}: this machine has {torch.cuda.device_count()} GPU(s)",
            )
        else:
            require(d.type == "cpu", f"device = {device!r}: use cpu or cuda[:N]")

    @staticmethod
    def batch_threads(threads: int) -> contextlib.AbstractContextManager:
        """``threads`` torch threads while a batch renders (workers must not oversubscribe)."""
        return TorchThreads(threads)

    def chunk(self, batch: int) -> int:
        """The whole batch at once (a GPU wants large batches)."""
        return batch

    def asarray(self, a):
        t = self.torch
        if isinstance(a, t.Tensor):
            return a.to(self.device, t.float32)
        return t.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device)

    def numpy(self, x) -> np.ndarray:
        return x.detach().cpu().numpy()

    def zeros(self, shape: tuple[int, ...]):
        return self.torch.zeros(shape, device=self.device)

    def generator(self, seed: int):
        """A torch generator on the device seeded with ``seed`` (64-bit)."""
        return self.torch.Generator(device=self.device).manual_seed(seed & (2**63 - 1))

    def normals(self, shape: tuple[int, ...], seed: int, generator=None):
        """Standard normals ``shape`` float32 from a torch generator on the device seeded with
        ``seed`` (64-bit; reproducible on the same kind of device), or from ``generator``
        (then ``seed`` is unused: the caller continues that generator's stream)."""
        g = self.generator(seed) if generator is None else generator
        return self.torch.randn(shape, generator=g, device=self.device)

    def uniforms(self, shape: tuple[int, ...], generator):
        """Uniforms in [0, 1) ``shape`` float32 from ``generator`` (after its normals)."""
        return self.torch.rand(shape, generator=generator, device=self.device)

    def padded(self, x, n: int):
        buf = self.torch.zeros((*x.shape[:-2], n, n), device=x.device, dtype=x.dtype)
        buf[..., : x.shape[-2], : x.shape[-1]] = x
        return buf

    def rfft2(self, x, n: int):
        return self.torch.fft.rfft2(x, s=(n, n))

    def kernel_spectrum(self, k, n: int):
        return self.torch.fft.rfft2(self.asarray(k), s=(n, n))

    def irfft2(self, spec, n: int):
        return self.torch.fft.irfft2(spec, s=(n, n))

    def take_same(self, circ, r: int, w: int):
        out = circ.new_zeros((*circ.shape[:-2], w, w))
        out[..., r : w - r, r : w - r] = circ[..., 2 * r : w, 2 * r : w]
        return out

    def exp(self, x):
        return self.torch.exp(x)

    def cat(self, parts: list, axis: int):
        return self.torch.cat(parts, axis)

    def stack(self, parts: list):
        return self.torch.stack(parts)

    def rows(self, x, index: np.ndarray):
        i = self.torch.from_numpy(np.asarray(index, np.int64)).to(x.device)
        return x.index_select(0, i)

    def index_add(self, out, index: np.ndarray, values):
        i = self.torch.from_numpy(np.asarray(index, np.int64)).to(out.device)
        return out.index_add(0, i, values)

    def clip(self, x, lo: float, hi: float):
        return x.clamp(lo, hi)

    def minimum(self, x, v: float):
        return x.clamp(max=v)


def conv_same(backend, x, spec, r: int):
    """``x`` ``(..., W, W)`` convolved with the kernel whose spectrum is ``spec`` (a kernel of
    side ``2r + 1`` in the top-left of ``(n, n)``), 'same' size: exact on the pixels at least
    ``r`` from the border, 0 on that band (the chain trims it: it lies in the margin)."""
    n = spec.shape[-2]
    w = x.shape[-1]
    require(n >= w, f"conv_same: FFT size {n} is smaller than the image ({w} px)")
    return backend.take_same(backend.irfft2(backend.rfft2(x, n) * spec, n), r, w)


class TorchThreads:
    """``threads`` torch threads inside the context; re-entrant, so one object serves every
    batch."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def __exit__(self, *exc) -> None:
        import torch

        torch.set_num_threads(self.before)


BACKENDS = {"numpy": NumpyBackend, "torch": TorchBackend}


def make_backend(name: str, device="cpu", threads: int = 1):
    """``numpy`` (scipy FFT, ``threads`` workers; ``device`` must be the CPU) or ``torch``
    on ``device``."""
    require(name in BACKENDS, f"renderer = {name!r}: use one of {', '.join(BACKENDS)}")
    return BACKENDS[name].create(device, threads)
