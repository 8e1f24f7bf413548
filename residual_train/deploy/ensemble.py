"""Self-ensemble: the network run on the frame flipped or turned by each transform it was
trained with, its residual maps turned back and averaged.

A model trained with ``data.geometric = lens`` saw every patch also as each symmetry of its
lens shows it (``soft_prime``, with coma along x: flipped top to bottom), so each of those
views of a frame is a photograph it knows how to correct. The network is not exactly
equivariant to them, and the mean of its answers over the views is a better estimate than
any one (``default`` 20261204 on validation: +0.08 to +0.14 dB, docs/quality.md), at one
network pass per view. A head whose degradation has no direction (pixel-independent sensor
noise: :meth:`data_gen.components.base.Component.orientation_free`) also averages the views
training did not show: a frame turned a quarter shows a blur the lens never makes, but
noise just as it is (every flip and turn: a further +0.02 to +0.05 dB, at eight passes
instead of two; ``self_ensemble = trained`` keeps every map on the trained views). The
maps are averaged before composition, so every component's strength still applies without
running the network again. A view of a field-varying lens
reads, at each pixel, the bank PSF that pixel shows after the transform (the rule training
applies to a flipped patch's PSF index).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from data_gen.optics.symmetry import INVERSE, dihedral

# ``self_ensemble``: one pass | every map over the views training used | and a map whose
# degradation has no direction over every flip and turn (``default``: 1 | 2 | 8 passes);
# checked with data_gen.core.values.one_of
CHOICES = (False, "trained", True)

Predict = Callable[[np.ndarray, np.ndarray | None], dict[str, np.ndarray]]


def ensemble_maps(
    predict: Predict,
    x: np.ndarray,
    transforms: Sequence[int],
    psf_index: np.ndarray | None = None,
    psf_perm: np.ndarray | None = None,
    heads: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """The mean over ``transforms`` (dihedral, 0..7) of ``T⁻¹(predict(T(x), index_T))``.

    ``predict(x (C, H, W), psf_index (H, W) or None) -> {head: (C, H, W)}``: the network on
    one view (a quarter turn gives it ``(C, W, H)``). ``psf_index`` ``(H, W)``: each pixel's
    bank PSF, for a field-aware model; then ``psf_perm`` ``(8, N)`` gives the bank PSF a pixel
    of PSF ``j`` shows after transform ``t`` (``psf_perm[t, j]``). ``heads``: the transforms
    each head averages, when they differ (each a subset of ``transforms``, which are the
    network passes; a head not named averages all of them). With the identity alone this is
    ``predict(x, psf_index)``, bit for bit. Output: float32 maps of ``x``'s shape.
    """
    if len(transforms) == 0:
        raise ValueError("self-ensemble of no transforms")
    heads = {h: tuple(v) for h, v in (heads or {}).items()}
    for h, v in heads.items():
        if not v or not set(v) <= set(transforms):
            raise ValueError(f"head {h!r} averages {list(v)}, not a subset of {list(transforms)}")
    if tuple(transforms) == (0,):
        return predict(x, psf_index)
    if psf_index is not None and psf_perm is None:
        raise ValueError("a self-ensemble with PSF indices needs psf_perm")
    total: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    for t in transforms:
        view = np.ascontiguousarray(dihedral(x, t))
        index = None
        if psf_index is not None:
            index = np.ascontiguousarray(psf_perm[t][dihedral(psf_index, t)])
        for head, m in predict(view, index).items():
            if t not in heads.get(head, transforms):
                continue
            back = dihedral(m, INVERSE[t])
            if head in total:
                total[head] += back
            else:
                total[head] = back.astype(np.float32, copy=True)
            count[head] = count.get(head, 0) + 1
    return {head: m * np.float32(1.0 / count[head]) for head, m in total.items()}
