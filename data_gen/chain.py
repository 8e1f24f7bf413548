"""The physical chain of degradations and the targets of each component.

A component list is a sub-sequence of :data:`ORDER` (the order light meets them; noise,
when present, is last). One sample's parameters (``params[c]``, drawn once) and one set of
standard normals ``r`` serve every render, so the targets differ from the input only
by the component they leave out:

* ``without_<c>``: the chain rendered with every component except ``c`` (same draws) —
  the leave-one-out target; ``R_c = without_c − input``. Every target that keeps the noise
  carries the input's noise ``n = σ(s)·r`` (``s``: the input's signal before noise), as
  schema v1's ``noise`` patch carries the blurred signal's: the residuals of the other
  components are then noise-free, and the noise level a correction implies is restored
  at composition (``σ(after)/σ(before)``, :func:`residual_train.deploy.compose.compose_chain`).
* ``before_<c>``: the chain rendered up to, not including, ``c`` — the peeling target;
  ``P_c = before_c − before_<next>`` (``before`` of the input is the input itself).

The two agree for the last component, and for lens blur followed by noise (the
two-component data of schema v1): the noise is one shared ``n``, so removing it commutes
with everything before it. In general they differ by cross terms
(relight then blur: ``R_relight + R_blur = x − S + (I − B)(I − G)S`` while the peeling
residuals sum to ``S − x`` exactly). :func:`data_gen.chain.render_chain` returns both;
``tests/test_chain.py`` measures the difference.

Arrays: float32 ``(C, H, W)`` linear (0 = black, 1 = white), not clipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from data_gen import components as cp
from data_gen.errors import require
from data_gen.noise import NoiseModel

ORDER = ("relight", "fog", "defocus", "blur", "motion", "noise")
NEEDS_DEPTH = ("fog", "defocus")


def check_components(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, refused in one line when a name is unknown, listed twice or
    out of physical order."""
    names = tuple(str(n) for n in names)
    require(bool(names), "components is empty: list at least one (e.g. [blur, noise])")
    for n in names:
        require(n in ORDER, f"components: unknown component {n!r}; known: {', '.join(ORDER)}")
    for n in set(names):
        require(names.count(n) == 1, f"components: {n!r} is listed twice")
    pos = [ORDER.index(n) for n in names]
    require(
        pos == sorted(pos),
        f"components: [{', '.join(names)}] is out of physical order; the order is "
        + " → ".join(ORDER),
    )
    return names


def prepare(
    names: Sequence[str], params: dict, depth: np.ndarray | None, shape: tuple[int, int]
) -> dict:
    """The parameters :func:`apply` takes, per non-noise component of ``names``: what
    depends on the draws and the depth only is computed once here (fog's transmission,
    defocus's layers), not once per render. ``shape``: the image's ``(H, W)``."""
    out = {}
    for c in names:
        p = params.get(c, {})
        if c in NEEDS_DEPTH:
            require(depth is not None, f"component {c} needs a depth map, and this image has none")
            cp.check_depth(depth, shape)
        if c == "fog":
            p = {"t": cp.transmission(depth, p["beta"]), "airlight": p["airlight"]}
        elif c == "defocus":
            p = {"layers": cp.defocus_layers(depth, p["radius"], p.get("layers", 12))}
        out[c] = p
    return out


def apply(name: str, x: np.ndarray, p: dict) -> np.ndarray:
    """One non-noise component on ``x`` with its prepared parameters ``p`` (:func:`prepare`)."""
    if name == "relight":
        return cp.relight(x, p["gain"])
    if name == "fog":
        return cp.add_fog(x, p["t"], p["airlight"])
    if name == "defocus":
        return cp.composite_layers(x, p["layers"])
    if name in ("blur", "motion"):
        k = p["psf"] if name == "blur" else p["kernel"]
        k = np.asarray(k, np.float32)
        if k.ndim == 2:
            return cp.blur_image(x, k)
        return np.stack([cp.blur_image(c[None], kc)[0] for c, kc in zip(x, k, strict=True)])
    raise ValueError(f"apply: {name!r} is not a non-noise component")


def _run(x: np.ndarray, names: Sequence[str], prepared: dict) -> np.ndarray:
    """The non-noise components ``names`` applied to ``x`` in order."""
    x = x.astype(np.float32)
    for c in names:
        x = apply(c, x, prepared[c])
    return x


def render_chain(
    scene: np.ndarray,
    components: Sequence[str],
    params: dict,
    depth: np.ndarray | None = None,
    noise: NoiseModel | None = None,
    normal: np.ndarray | None = None,
    margin: int = 0,
) -> dict[str, np.ndarray]:
    """``clean`` (the scene), ``input`` (every component), ``without_<c>`` and
    ``before_<c>`` for each component ``c`` (module docstring).

    ``margin``: pixels trimmed from every side of every output before the noise is added
    (the support the blurs need around a patch); ``normal`` has the trimmed shape. Work is
    shared: the ``before_<c>`` are the chain's prefixes, and each ``without_<c>`` continues
    the prefix that ends before ``c``."""
    names = check_components(components)
    body = [c for c in names if c != "noise"]  # noise, when listed, is last
    m = int(margin)
    trim = (lambda a: a[:, m:-m, m:-m]) if m > 0 else (lambda a: a)
    prepared = prepare(body, params, depth, scene.shape[1:])
    prefix = [scene.astype(np.float32)]
    for c in body:
        prefix.append(apply(c, prefix[-1], prepared[c]))
    signal = trim(prefix[-1])
    n = None
    if "noise" in names:
        require(noise is not None and normal is not None, "component noise needs its model and r")
        n = noise.sample(signal, normal).astype(np.float32)

    def noisy(a: np.ndarray) -> np.ndarray:
        return a if n is None else (a + n).astype(np.float32)

    out = {"clean": trim(prefix[0]), "input": noisy(signal)}
    for i, c in enumerate(body):
        out[f"without_{c}"] = noisy(trim(_run(prefix[i], body[i + 1 :], prepared)))
        out[f"before_{c}"] = trim(prefix[i])
    if n is not None:
        out["without_noise"] = out["before_noise"] = signal
    return out


def before(arrays: Mapping[str, np.ndarray], components: Sequence[str], c: str) -> np.ndarray:
    """``before_<c>`` of stored arrays (the first component's is ``clean``, noise's is
    ``without_noise``: schema v2 stores neither twice)."""
    if c == components[0]:
        return arrays["clean"]
    if c == "noise":
        return arrays["without_noise"]
    return arrays[f"before_{c}"]


def stored_residuals(
    arrays: Mapping[str, np.ndarray], components: Sequence[str], mode: str = "peeling"
) -> dict[str, np.ndarray]:
    """Each component's residual from its targets: ``peeling`` ``before_c − before_next``
    (``before`` of the input is the input; they sum to ``clean − input``) or
    ``leave_one_out`` ``without_c − input`` (module docstring)."""
    x = arrays["input"]
    if mode == "leave_one_out":
        return {c: arrays[f"without_{c}"] - x for c in components}
    nxt = [*(before(arrays, components, c) for c in components[1:]), x]
    return {c: before(arrays, components, c) - n for c, n in zip(components, nxt, strict=True)}


def residuals(targets: dict[str, np.ndarray], components: Sequence[str]) -> dict[str, dict]:
    """``{"leave_one_out": ..., "peeling": ...}`` of :func:`stored_residuals`."""
    names = check_components(components)
    return {m: stored_residuals(targets, names, m) for m in ("leave_one_out", "peeling")}
