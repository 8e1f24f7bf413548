"""A classical baseline for each degradation component (docs/design.md §8–9), each given
what it is owed and labelled ORACLE where it is given the truth.

:data:`BASELINES_BY_COMPONENT` ``[component][name]`` is ``fn(degraded, truth) -> estimate``:
``degraded`` ``(C, H, W)`` float32 linear (0 = black, 1 = white) with that component in,
the estimate of the same image with it removed; ``truth`` a :class:`Truth` with what the
baseline needs (:data:`GIVEN` says what, in words). Oracle choices read ``truth.clean``
(and count only ``truth.mask``'s pixels when given).
"""

from residual_train.evaluate.classical.blur_noise import (
    blur_bm3d_wiener,
    blur_wiener,
    blur_wiener_wavelet,
    noise_bm3d,
    noise_wavelet,
)
from residual_train.evaluate.classical.deblur import (
    deblur_kernel,
    deblur_kernel_oracle,
    deblur_layers,
    deblur_layers_oracle,
    defocus_richardson_lucy,
    defocus_wiener,
    motion_richardson_lucy,
    motion_wiener,
)
from residual_train.evaluate.classical.fog import (
    dehaze_dark_channel,
    dehaze_oracle,
    estimate_dark_channel,
    fog_dark_channel,
    fog_oracle,
)
from residual_train.evaluate.classical.relight import (
    relight_best_oracle,
    relight_polyfit,
    relight_polyfit_oracle,
    relight_retinex,
    relight_retinex_oracle,
)
from residual_train.evaluate.classical.truth import Truth

BASELINES_BY_COMPONENT = {
    "relight": {
        "retinex_oracle": relight_retinex_oracle,
        "polyfit_oracle": relight_polyfit_oracle,
        "smooth_oracle": relight_best_oracle,
    },
    "fog": {"dark_channel": fog_dark_channel, "oracle_t": fog_oracle},
    "defocus": {"wiener_oracle": defocus_wiener, "rl_oracle": defocus_richardson_lucy},
    "blur": {
        "wiener_oracle": blur_wiener,
        "wiener_wavelet": blur_wiener_wavelet,
        "bm3d_wiener": blur_bm3d_wiener,
    },
    "motion": {"wiener_oracle": motion_wiener, "rl_oracle": motion_richardson_lucy},
    "noise": {"wavelet": noise_wavelet, "bm3d": noise_bm3d},
}

GIVEN = {
    "relight": {
        "retinex_oracle": "Gaussian-blurred luminance (one σ or multi-scale); σ and the "
        "global scale by oracle",
        "polyfit_oracle": "luminance-weighted polynomial fit of log-luminance; order and the "
        "global scale by oracle",
        "smooth_oracle": "the better of retinex_oracle and polyfit_oracle (oracle)",
    },
    "fog": {
        "dark_channel": "nothing (blind): He et al.'s dark channel prior, guided filter",
        "oracle_t": "the true transmission and airlight: exact inversion, the oracle upper bound",
    },
    "defocus": {
        "wiener_oracle": "the true depth layers and discs; Wiener balance per layer by oracle",
        "rl_oracle": "the true depth layers and discs; Richardson–Lucy iterations per layer "
        "by oracle",
    },
    "blur": {
        "wiener_oracle": "the true PSF of every pixel; balance by oracle",
        "wiener_wavelet": "the true PSFs; balance by oracle; blind wavelet denoising",
        "bm3d_wiener": "the true PSFs and noise model; balance by oracle",
    },
    "motion": {
        "wiener_oracle": "the true shake kernel; balance by oracle",
        "rl_oracle": "the true shake kernel; iterations by oracle",
    },
    "noise": {
        "wavelet": "nothing (blind): BayesShrink wavelet denoising",
        "bm3d": "the true noise model (generalised Anscombe + BM3D)",
    },
}

__all__ = [
    "BASELINES_BY_COMPONENT",
    "GIVEN",
    "Truth",
    "deblur_kernel",
    "deblur_kernel_oracle",
    "deblur_layers",
    "deblur_layers_oracle",
    "dehaze_dark_channel",
    "dehaze_oracle",
    "estimate_dark_channel",
    "relight_polyfit",
    "relight_retinex",
]
