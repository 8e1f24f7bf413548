"""The physical chain (data_gen/chain.py): component lists, targets per component, and the
composition of N components (residual_train.deploy.compose.compose_chain) on true
residuals."""

from __future__ import annotations

import numpy as np
import pytest

from data_gen import components as cp
from data_gen.chain import check_components, render_chain, residuals
from data_gen.errors import InputError
from data_gen.noise import NoiseModel
from data_gen.sources import dead_leaves
from residual_train.deploy.compose import Component, compose_chain

NOISE = NoiseModel(np.full(3, 2e-3, np.float32), np.full(3, 1e-5, np.float32))
PARAMS: list = []  # the last sample's params and depth


def sample(components, seed: int = 0):
    rng = np.random.default_rng(seed)
    scene, depth = dead_leaves(rng, size=48, supersample=2, depth=(1.0, 20.0))
    scene = (0.05 + 0.6 * scene).astype(np.float32)  # inside the sensor's range throughout
    params = {
        "relight": {"gain": cp.gain_map((48, 48), **cp.draw_relight(rng, amplitude=(0.1, 0.4)))},
        "fog": cp.draw_fog(rng, beta=(0.02, 0.05)),
        "blur": {"psf": cp.disc_kernel(1.5)},
        "motion": cp.draw_motion(rng, (3, 6)),
    }
    normal = rng.standard_normal(scene.shape).astype(np.float32)
    t = render_chain(scene, components, params, depth, NOISE, normal)
    PARAMS[:] = [params, depth]
    return scene, t, normal


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["blur", "haze"], "unknown component 'haze'"),
        (["blur", "blur", "noise"], "'blur' is listed twice"),
        (["noise", "blur"], "[noise, blur] is out of physical order"),
        (["fog", "relight"], "the order is relight → fog → defocus → blur → motion → noise"),
        ([], "components is empty"),
    ],
)
def test_bad_component_lists_are_refused_in_one_line(names, message):
    with pytest.raises(InputError, match=None) as e:
        check_components(names)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_depth_dependent_component_without_depth_is_refused():
    with pytest.raises(InputError, match="component fog needs a depth map"):
        render_chain(
            np.zeros((3, 8, 8), np.float32), ["fog"], {"fog": {"beta": 0.1, "airlight": [1] * 3}}
        )


def test_targets_per_component_and_their_identities():
    names = ["relight", "fog", "blur", "motion", "noise"]
    scene, t, normal = sample(names)
    res = residuals(t, names)
    x = t["input"]
    for c in names:  # input + R_c = without_c
        np.testing.assert_allclose(x + res["leave_one_out"][c], t[f"without_{c}"], atol=1e-6)
    # the noise target: the same realisation at the noise-free signal's own level
    pre = t["before_noise"]
    np.testing.assert_allclose(x - pre, NOISE.std(pre) * normal, atol=1e-6)
    # every target that keeps the noise carries the input's realisation: the other
    # components' residuals are noise-free
    for c in names[:-1]:
        kept = [m for m in names if m not in (c, "noise")]
        clean_target = render_chain(scene, kept, PARAMS[0], PARAMS[1])
        np.testing.assert_allclose(t[f"without_{c}"] - clean_target["input"], x - pre, atol=1e-6)
    # peeling residuals telescope to the clean image exactly
    total = sum(res["peeling"].values())
    np.testing.assert_allclose(x + total, scene, atol=2e-6)
    # leave-one-out residuals do not: cross terms between non-commuting components
    cross = np.abs(x + sum(res["leave_one_out"].values()) - scene).max()
    assert cross > 1e-3


def test_blur_then_noise_leave_one_out_and_peeling_agree_as_in_schema_v1():
    _, t, _ = sample(["blur", "noise"])
    res = residuals(t, ["blur", "noise"])
    for c in ("blur", "noise"):
        np.testing.assert_allclose(res["leave_one_out"][c], res["peeling"][c], atol=1e-6)


def test_composition_at_strengths_on_true_residuals():
    names = ["relight", "fog", "blur", "noise"]
    scene, t, normal = sample(names, seed=3)
    x = t["input"]
    peel = residuals(t, names)["peeling"]

    def compose(strengths: dict) -> np.ndarray:
        return compose_chain(
            x,
            [
                Component(c, peel[c], strengths.get(c, 0.0), NOISE if c == "noise" else None)
                for c in names
            ],
        )

    np.testing.assert_array_equal(compose({}), x)  # all strengths 0: the input, exactly
    full = compose(dict.fromkeys(names, 1.0))
    np.testing.assert_allclose(full, scene, atol=3e-6)  # all 1: the clean scene
    # one strength: its own share, and the kept noise follows the brightness it changed
    only_fog = compose({"fog": 1.0})
    ref = t["before_noise"]
    k = NOISE.ratio(ref + peel["fog"], ref)
    np.testing.assert_allclose(
        only_fog, x + peel["fog"] - k * peel["noise"] + peel["noise"], atol=1e-6
    )
    assert np.abs(k - 1).max() > 0.01  # defogging does change the noise level
    only_blur_noise = compose({"noise": 1.0})  # the noise alone: no brightness change
    np.testing.assert_allclose(only_blur_noise, x + peel["noise"], atol=1e-7)
    # relight and fog corrected, noise kept: the noise a camera makes at the relit,
    # defogged (and still blurred) signal, from the same realisation r
    kept = compose({"relight": 1.0, "fog": 1.0, "blur": 1.0}) - scene
    np.testing.assert_allclose(kept, NOISE.std(scene) * normal, atol=3e-6)
    # ... which differs from the noise the input carried (a brighter or darker signal)
    assert np.abs(kept - (x - t["before_noise"])).max() > 1e-3
