"""The physical chain of degradations and the targets of each component (docs/design.md §9).

A component list is a sub-sequence of :data:`data_gen.components.ORDER` (the order light
meets them; noise, when present, is last). One sample's parameters (``params[c]``, drawn
once) and one set of standard normals ``r`` serve every render, so the targets differ from
the input only by the component they leave out:

* ``without_<c>``: the chain rendered with every component except ``c`` (same draws) —
  the leave-one-out target; ``R_c = without_c − input``. Every target that keeps the noise
  carries the input's noise ``n = σ(s)·r`` (``s``: the input's signal before noise), as
  schema v1's ``noise`` patch carries the blurred signal's: the residuals of the other
  components are then noise-free, and the noise level a correction implies is restored at
  composition (:mod:`residual_train.deploy.compose`).
* ``before_<c>``: the chain rendered up to, not including, ``c`` — the peeling target;
  ``P_c = before_c − before_<next>`` (``before`` of the input is the input itself).

The two agree for the last component, and for lens blur followed by noise (the
two-component data of schema v1): the noise is one shared ``n``, so removing it commutes
with everything before it. In general they differ by cross terms (relight then blur:
``R_relight + R_blur = x − S + (I − B)(I − G)S`` while the peeling residuals sum to
``S − x`` exactly).

:func:`render_chain` is the numpy reference, one image at a time (each component's
:meth:`~data_gen.components.base.Component.apply`); :mod:`data_gen.chain_batch` renders
batches with the same physics on numpy or torch, and the tests hold the two together.

Arrays: float32 ``(C, H, W)`` linear (0 = black, 1 = white), not clipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from data_gen.components import V1, Chain, check_names, component_class
from data_gen.core.errors import require
from data_gen.noise import NoiseModel
from data_gen.noise_kinds import NoiseKind, default_kind

# schema v1's names for the four arrays of the chain [blur, noise]
V1_NAMES = {
    "clean": "clean",
    "blur": "without_noise",
    "noise": "without_blur",
    "noise_blur": "input",
}


def stored_names(components: Sequence[str]) -> list[str]:
    """The patch datasets a shard of ``components`` stores, in storage order: schema v1's
    four for blur and noise, else schema v2's (``input``, ``clean``, every ``without_<c>``,
    and ``before_<c>`` of every component that is neither the first — its ``before`` is
    ``clean`` — nor noise — its ``before`` is ``without_noise``)."""
    names = check_names(components)
    if names == V1:
        return list(V1_NAMES)
    extra = [f"before_{c}" for c in names[1:] if not component_class(c).before_is_without]
    return ["input", "clean", *(f"without_{c}" for c in names), *extra]


def chain_names(stored: str) -> str:
    """The chain's name of a stored dataset (schema v1's ``noise_blur`` is ``input``)."""
    return V1_NAMES.get(stored, stored)


def render_chain(
    scene: np.ndarray,
    chain: Chain,
    params: dict,
    depth: np.ndarray | None = None,
    noise: NoiseModel | None = None,
    normal: np.ndarray | None = None,
    margin: int = 0,
    kind: NoiseKind | None = None,
    draws: dict | None = None,
) -> dict[str, np.ndarray]:
    """``clean`` (the scene), ``input`` (every component), ``without_<c>`` and
    ``before_<c>`` for each component ``c`` of ``chain`` (module docstring); the reference.

    ``margin``: pixels trimmed from every side of every output before the noise is added
    (the support the blurs need around a patch); ``normal`` has the trimmed shape. Work is
    shared: the ``before_<c>`` are the chain's prefixes, and each ``without_<c>`` continues
    the prefix that ends before ``c``. ``kind``: the sensor's noise kind (default
    Poisson–Gaussian) with its ``draws`` for this image
    (:func:`data_gen.noise_kinds.draw_noise`)."""
    body = chain.body
    m = int(margin)
    trim = (lambda a: a[:, m:-m, m:-m]) if m > 0 else (lambda a: a)
    for c in body:
        require(
            not c.needs_depth or depth is not None,
            f"component {c.name} needs a depth map, and this image has none",
        )
    prepared = {c.name: c.prepare(params.get(c.name, {}), depth, scene.shape[1:]) for c in body}

    def run(x: np.ndarray, comps) -> np.ndarray:
        for c in comps:
            x = c.apply(x, prepared[c.name])
        return x

    prefix = [scene.astype(np.float32)]
    for c in body:
        prefix.append(c.apply(prefix[-1], prepared[c.name]))
    signal = trim(prefix[-1])
    n = None
    if chain.noise is not None:
        require(noise is not None and normal is not None, "component noise needs its model and r")
        n = (kind or default_kind()).sample(signal, noise, normal, draws or {})
        n = n.astype(np.float32)

    def noisy(a: np.ndarray) -> np.ndarray:
        return a if n is None else (a + n).astype(np.float32)

    out = {"clean": trim(prefix[0]), "input": noisy(signal)}
    for i, c in enumerate(body):
        out[f"without_{c.name}"] = noisy(trim(run(prefix[i], body[i + 1 :])))
        out[f"before_{c.name}"] = trim(prefix[i])
    if n is not None:
        out["without_noise"] = out["before_noise"] = signal
    return out


def before(arrays: Mapping[str, np.ndarray], components: Sequence[str], c: str) -> np.ndarray:
    """``before_<c>`` of stored arrays (the first component's is ``clean``, noise's is
    ``without_noise``: schema v2 stores neither twice)."""
    if c == components[0]:
        return arrays["clean"]
    if component_class(c).before_is_without:
        return arrays[f"without_{c}"]
    return arrays[f"before_{c}"]


def _peeling(arrays: Mapping[str, np.ndarray], components: Sequence[str]) -> dict:
    """``before_c − before_next`` (``before`` of the input is the input; they sum to
    ``clean − input``)."""
    nxt = [*(before(arrays, components, c) for c in components[1:]), arrays["input"]]
    return {c: before(arrays, components, c) - n for c, n in zip(components, nxt, strict=True)}


def _leave_one_out(arrays: Mapping[str, np.ndarray], components: Sequence[str]) -> dict:
    """``without_c − input``."""
    return {c: arrays[f"without_{c}"] - arrays["input"] for c in components}


RESIDUALS = {"peeling": _peeling, "leave_one_out": _leave_one_out}
"""The residual of each component from its targets, by mode (module docstring)."""


def stored_residuals(
    arrays: Mapping[str, np.ndarray], components: Sequence[str], mode: str = "peeling"
) -> dict[str, np.ndarray]:
    """Each component's residual from its targets, by ``mode`` (:data:`RESIDUALS`):
    ``peeling`` ``before_c − before_next`` or ``leave_one_out`` ``without_c − input``.
    Schema v1's names are accepted too."""
    require(mode in RESIDUALS, f"residuals = {mode!r}: use one of {', '.join(RESIDUALS)}")
    return RESIDUALS[mode]({chain_names(k): v for k, v in arrays.items()}, components)


def residuals(targets: dict[str, np.ndarray], components: Sequence[str]) -> dict[str, dict]:
    """``{"leave_one_out": ..., "peeling": ...}`` of :func:`stored_residuals`."""
    names = check_names(components)
    return {m: stored_residuals(targets, names, m) for m in ("leave_one_out", "peeling")}
