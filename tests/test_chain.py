"""The physical chain (data_gen/chain.py, data_gen/chain_batch.py): component lists, targets
per component, the batched renderer against the reference, and the composition of N
components (residual_train.deploy.compose) on true residuals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from data_gen import chain_batch
from data_gen.backend import NumpyBackend, TorchBackend
from data_gen.chain import chain_names, render_chain, residuals, stored_names, stored_residuals
from data_gen.components import ORDER, REGISTRY, Chain, DrawContext, check_names
from data_gen.core.errors import InputError
from data_gen.noise import NoiseModel
from residual_train.deploy.compose import compose, compose_reference
from residual_train.evaluate.metrics import psnr
from tests.helpers.scenes import lens, scene

NOISE = NoiseModel(np.full(3, 2e-3, np.float32), np.full(3, 1e-5, np.float32))
SIX = ["relight", "fog", "defocus", "blur", "motion", "noise"]


@dataclass
class Rendered:
    chain: Chain
    scene: np.ndarray
    depth: np.ndarray
    params: dict
    normal: np.ndarray
    margin: int
    t: dict


def render(names, seed: int = 0, size: int = 96, smooth_depth: bool = True) -> Rendered:
    """The chain on a scene, with what made it."""
    chain = Chain.defaults(names)
    s, depth, rng = scene(seed, size, smooth_depth)
    psf = lens()
    m = chain.margin(psf.shape[-1])
    params, _ = chain.draw(rng, DrawContext((size, size), (0, 0, size, size), depth, psf, 3))
    normal = rng.standard_normal((3, size - 2 * m, size - 2 * m)).astype(np.float32)
    t = render_chain(s, chain, params, depth, NOISE, normal, m)
    return Rendered(chain, s, depth, params, normal, m, t)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["blur", "haze"], "unknown component 'haze'"),
        (["blur", "blur", "noise"], "'blur' is listed twice"),
        (["noise", "blur"], "[noise, blur] is out of physical order"),
        (["fog", "relight"], "the order is relight → fog → defocus → blur → motion → noise"),
        ([], "components = []: list at least one component"),
        ("blur", "a list of component names"),
    ],
)
def test_bad_component_lists_are_refused_in_one_line(names, message):
    with pytest.raises(InputError) as e:
        check_names(names)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_registry_holds_one_object_per_component_in_physical_order():
    assert ORDER == ("relight", "fog", "defocus", "blur", "motion", "noise")
    assert {REGISTRY[c].transport for c in ORDER} == {"gain", "spread", "signal"}
    assert [c for c in ORDER if REGISTRY[c].needs_depth] == ["fog", "defocus"]
    chain = Chain.defaults(SIX)
    assert chain.names == tuple(SIX) and chain.noise.name == "noise"
    assert chain.margin(31) == 15 + chain["defocus"].margin(31) + chain["motion"].margin(31)


def test_a_depth_dependent_component_without_depth_is_refused():
    chain = Chain.defaults(["fog"])
    with pytest.raises(InputError, match="component fog needs a depth map"):
        render_chain(
            np.zeros((3, 8, 8), np.float32), chain, {"fog": {"beta": 0.1, "airlight": [1] * 3}}
        )


def test_targets_per_component_and_their_identities():
    names = ["relight", "fog", "blur", "motion", "noise"]
    r = render(names, smooth_depth=False)
    t = r.t
    res = residuals(t, names)
    x = t["input"]
    for c in names:  # input + R_c = without_c
        np.testing.assert_allclose(x + res["leave_one_out"][c], t[f"without_{c}"], atol=1e-6)
    # the noise target: the same realisation at the noise-free signal's own level
    pre = t["before_noise"]
    np.testing.assert_allclose(x - pre, NOISE.std(pre) * r.normal, atol=1e-6)
    # every target that keeps the noise carries the input's realisation
    for c in names[:-1]:
        kept = Chain(tuple(k for k in r.chain.body if k.name != c))
        clean_target = render_chain(r.scene, kept, r.params, r.depth, margin=r.margin)
        np.testing.assert_allclose(t[f"without_{c}"] - clean_target["input"], x - pre, atol=1e-6)
    # peeling residuals telescope to the clean image exactly; leave-one-out ones do not
    np.testing.assert_allclose(x + sum(res["peeling"].values()), t["clean"], atol=2e-6)
    assert np.abs(x + sum(res["leave_one_out"].values()) - t["clean"]).max() > 1e-3


def test_blur_then_noise_leave_one_out_and_peeling_agree_as_in_schema_v1():
    t = render(["blur", "noise"]).t
    res = residuals(t, ["blur", "noise"])
    for c in ("blur", "noise"):
        np.testing.assert_allclose(res["leave_one_out"][c], res["peeling"][c], atol=1e-6)


@pytest.mark.parametrize("names", [["blur", "noise"], ["relight", "fog", "blur", "noise"], SIX])
@pytest.mark.parametrize("backend", [NumpyBackend(), TorchBackend("cpu")], ids=["numpy", "torch"])
def test_the_batched_chain_matches_the_reference_on_every_stored_array(names, backend):
    """Per-sample parameters (no sharing of draws in a batch), the same normals fed in: every
    stored array of the batched chain equals the reference's to float32 rounding."""
    chain = Chain.defaults(names)
    psfs = np.stack([lens(1.0), lens(2.5)])
    m, p = chain.margin(15), 24
    w = p + 2 * m
    wins, depths, params, refs, normals = [], [], [], [], []
    for i in range(4):
        s, depth, rng = scene(i, w, smooth_depth=False)
        psf_index = i % 2
        ctx = DrawContext((w, w), (0, 0, w, w), depth, psfs[psf_index], 3)
        prm, _ = chain.draw(rng, ctx)
        normal = rng.standard_normal((3, p, p)).astype(np.float32)
        t = render_chain(s, chain, prm, depth, NOISE, normal, m)
        refs.append({k: np.minimum(t[chain_names(k)], 1) for k in stored_names(names)})
        wins.append(s)
        depths.append(depth)
        params.append(prm)
        normals.append(normal)
    noise = NoiseModel(np.tile(NOISE.A, (4, 1)), np.tile(NOISE.B, (4, 1)))
    batch = chain_batch.Batch(np.stack(wins), np.stack(depths), params, np.arange(4) % 2, psfs)
    out = chain_batch.render(chain, batch, m, noise, backend.asarray(np.stack(normals)), backend)
    assert sorted(out) == sorted(stored_names(names))
    for k in out:
        got = backend.numpy(out[k])
        want = np.stack([r[k] for r in refs])
        assert got.shape == want.shape and got.dtype == np.float32, k
        assert np.abs(got - want).max() <= 2e-6, (k, float(np.abs(got - want).max()))
    x = backend.numpy(out[stored_names(names)[0] if len(names) > 2 else "noise_blur"])
    assert not np.allclose(x[0], x[2])  # each sample its own scene and draws


def leave_in(names, seed, smooth_depth):
    """For each component ``c``: PSNR of the composition with ``c`` at strength 0 and every
    other at 1 against the rendering of ``c`` alone, by the transported rule and by the
    additive rule (every non-noise residual added, the noise re-scaled)."""
    r = render(names, seed, smooth_depth=smooth_depth)
    t = r.t
    x = t["input"]
    peel = stored_residuals(t, names)
    np.testing.assert_array_equal(compose(x, peel, dict.fromkeys(names, 0.0), NOISE), x)
    full = compose(x, peel, dict.fromkeys(names, 1.0), NOISE)
    np.testing.assert_allclose(full, t["clean"], atol=3e-6)
    out = {}
    for c in names:
        alone = Chain(tuple(k for k in r.chain.components if k.name == c))
        want = render_chain(r.scene, alone, r.params, r.depth, NOISE, r.normal, r.margin)["input"]
        st = {n: float(n != c) for n in names}
        y = compose(x, peel, st, NOISE)
        np.testing.assert_allclose(y, compose_reference(x, peel, st, NOISE), atol=1e-5)
        additive = x + sum(peel[n] for n in names if n not in (c, "noise"))
        if "noise" in names and c != "noise":  # the noise removed
            additive = additive + peel["noise"]
        elif c == "noise":  # kept, at the brightness the other corrections gave
            d = x + peel["noise"]
            m_ = additive + peel["noise"]
            additive = m_ - NOISE.ratio(m_, d) * peel["noise"]
        out[c] = (psnr(y, want), psnr(additive, want))
    return out


@pytest.mark.parametrize(
    ("names", "exact"),
    [
        (["relight", "blur", "noise"], ["relight", "blur", "noise"]),
        (["fog", "blur", "noise"], ["fog", "blur", "noise"]),
        (SIX, ["relight", "fog", "defocus", "noise"]),
    ],
)
def test_one_component_left_in_is_that_component_alone(names, exact):
    """With true residuals of rendered chains (smooth transmission): strength 0 for one
    component and 1 for the rest gives the rendering of that component alone within 40 dB
    wherever the only correlations are through smooth corrections; a blur left in while
    another blur is corrected keeps their cross term (no element-wise rule can remove it),
    and is never worse than the additive rule."""
    for seed in (0, 1):
        got = leave_in(names, seed, smooth_depth=True)
        for c, (transported, additive) in got.items():
            if c in exact:
                assert transported >= 40, (names, seed, c, transported, additive)
            assert transported >= additive - 0.5, (names, seed, c, transported, additive)
    # the additive rule leaves the cross term: the transported rule is what fixes it
    assert leave_in(["relight", "blur", "noise"], 0, True)["blur"][1] < 40


def test_the_kept_noise_follows_the_corrected_brightness():
    """Relight and fog corrected, noise kept: the noise a camera makes at the relit,
    defogged (still blurred) signal, from the same realisation r."""
    names = ["relight", "fog", "blur", "noise"]
    r = render(names, seed=3)
    t, normal = r.t, r.normal
    x = t["input"]
    peel = stored_residuals(t, names)
    kept = compose(x, peel, {"noise": 0.0}, NOISE) - t["clean"]
    np.testing.assert_allclose(kept, NOISE.std(t["clean"]) * normal, atol=3e-6)
    assert np.abs(kept - (x - t["before_noise"])).max() > 1e-3  # not the input's noise


def test_strengths_outside_zero_one_add_or_over_correct_a_component_boundedly():
    """−1 doubles a component, 2 removes it twice; linear in the strength for a component
    with nothing earlier to follow; out of range is refused."""
    names = ["relight", "blur", "noise"]
    t = render(names).t
    x = t["input"]
    peel = stored_residuals(t, names)
    at = {v: compose(x, peel, {"relight": v}, NOISE) for v in (-1.0, 0.0, 1.0, 2.0)}
    np.testing.assert_allclose(at[-1.0] - at[0.0], at[0.0] - at[1.0], atol=2e-6)
    np.testing.assert_allclose(at[2.0] - at[1.0], at[1.0] - at[0.0], atol=2e-6)
    more_noise = compose(x, peel, {"noise": -1.0}, NOISE) - compose(x, peel, {}, NOISE)
    k_max = NOISE.k_max[:, None, None]
    assert (np.abs(more_noise) <= 2 * k_max * np.abs(peel["noise"]) + 1e-6).all()
    assert np.std(more_noise) > 1.5 * np.std(peel["noise"])
    for bad in (-1.5, 2.5, float("inf")):
        with pytest.raises(InputError, match="strengths.relight"):
            compose(x, peel, {"relight": bad}, NOISE)
