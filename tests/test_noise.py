"""The one sensor noise model object (docs/design.md §1): numpy, torch and compiled kernels agree,
the signal is clamped at black, and the brightness ratio k is bounded by the sensor."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from data_gen.core.errors import InputError
from data_gen.noise import EPS, NoiseModel, variance, variance_scalar
from tests.conftest import ROOT

A = np.array([2.5e-3, 1.9e-3, 3.1e-3], np.float32)  # ISO 6400-like
B = np.array([2.3e-6, 1.1e-6, 4.0e-6], np.float32)


def test_variance_is_the_design_formula_with_the_signal_clamped_at_black():
    v = np.array([-0.5, -1e-3, 0.0, 1e-4, 0.3, 1.0, 1.7], np.float32)
    m = NoiseModel(A, B)
    got = m.variance(np.broadcast_to(v, (3, 1, 7)).copy())
    want = A[:, None, None] * np.maximum(v, 0) + B[:, None, None]
    assert np.array_equal(got, want.astype(np.float32))  # exactly, in float32
    assert (got >= B[:, None, None]).all()  # negative values are noise, never signal


def test_numpy_torch_and_compiled_versions_agree():
    rng = np.random.default_rng(0)
    v = rng.uniform(-0.2, 1.2, (4, 3, 9, 11)).astype(np.float32)
    a = rng.uniform(1e-5, 3e-3, (4, 3)).astype(np.float32)
    b = rng.uniform(1e-8, 1e-5, (4, 3)).astype(np.float32)
    ref = NoiseModel(a, b).std(v)
    t = NoiseModel(torch.from_numpy(a), torch.from_numpy(b)).std(torch.from_numpy(v))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-6)
    # numpy parameters follow a torch signal (the training loader's model, a GPU batch)
    np.testing.assert_allclose(NoiseModel(a, b).std(torch.from_numpy(v)).numpy(), ref, rtol=1e-6)
    scal = np.array(
        [variance_scalar(v[i, c, y, x], a[i, c], b[i, c]) for i, c, y, x in np.ndindex(v.shape)]
    ).reshape(v.shape)
    np.testing.assert_allclose(scal, ref**2, rtol=1e-6)


def test_the_formula_is_written_once_in_the_code_base():
    """σ² = A·v + B is spelled out in data_gen/noise.py alone (this pattern finds each of
    the six copies the code base had before the noise model became one object)."""
    idx = r"(\[[^\]]*\])?"
    pattern = re.compile(
        r"\b(a|A|ac)\b" + idx + r"\s*\*\s*\w+" + idx + r"\s*\+\s*\b(b|B|bc)\b" + idx + r"(?!\s*\*)"
    )
    hits = []
    for p in sorted([*ROOT.glob("data_gen/**/*.py"), *ROOT.glob("residual_train/**/*.py")]):
        if p.relative_to(ROOT).as_posix() == "data_gen/noise.py":
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, hits


def test_a_noise_table_is_read_by_one_rule_in_the_code_base():
    """ISO -> (a, b) between a table's ISOs is data_gen.noise.at_iso alone: darktable
    profiles, calibrated sensors, the noise kinds' tables and the model card's table (four
    copies before); raw DN <-> normalised is data_gen.sensor's pair of functions."""
    hits = []
    for p in sorted([*ROOT.glob("data_gen/**/*.py"), *ROOT.glob("residual_train/**/*.py")]):
        if p.relative_to(ROOT).as_posix() == "data_gen/noise.py":
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"np\.interp\(\s*iso\b", line):
                hits.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, hits


def test_one_table_gives_the_same_noise_to_the_sensor_and_the_card():
    """A calibrated sensor's table, written into a card by export's function and read back
    by the card, gives the sensor's own (a, b) at ISOs between the table's points; a
    shard's meta (k0, k1 in DN) gives them back too."""
    from data_gen.sensor import build_sensor, noise_table, normalised_ab
    from residual_train.release.card import NoiseTable

    cfg = {
        "kind": "table",
        "isos": [100, 800, 6400],
        "a": [[1e-4, 2e-4, 3e-4], [8e-4, 9e-4, 1e-3], [6e-3, 7e-3, 8e-3]],
        "b": [[1e-6] * 3, [4e-6] * 3, [3e-5] * 3],
        "ob": 512,
        "white": 16383,
        "iso": {"min": 100, "max": 6400},
    }
    sensor = build_sensor(cfg, 3)
    card = NoiseTable.from_json(noise_table(cfg, 3), "card")
    for iso in (100, 333.3, 800, 2500, 6400):
        p = sensor.params(iso)
        m = card.at(iso)
        np.testing.assert_allclose(m.A, p.a, rtol=1e-6)
        np.testing.assert_allclose(m.B, p.b, rtol=1e-6)
        a, b = normalised_ab(p.k0, p.k1, iso, p.ob, p.white)
        np.testing.assert_allclose(a, p.a, rtol=1e-6)
        np.testing.assert_allclose(b, p.b, rtol=1e-6)


def test_ratio_is_bounded_by_the_sensor_range():
    m = NoiseModel(A, B)
    k_max = np.sqrt((A + B + EPS) / (B + EPS))
    np.testing.assert_allclose(m.k_max, k_max, rtol=1e-6)
    rng = np.random.default_rng(1)
    after = rng.uniform(-3, 5, (3, 50, 50)).astype(np.float32)  # far outside [0, 1]
    before = rng.uniform(-3, 5, (3, 50, 50)).astype(np.float32)
    k = m.ratio(after, before)
    assert np.isfinite(k).all()
    assert (k <= k_max[:, None, None] * (1 + 1e-6)).all()
    assert (k >= 1 / k_max[:, None, None] * (1 - 1e-6)).all()
    # the extremes are reached: white over black and black over white
    one, zero = np.ones((3, 1, 1), np.float32), np.zeros((3, 1, 1), np.float32)
    np.testing.assert_allclose(m.ratio(one, zero)[:, 0, 0], k_max, rtol=1e-6)
    np.testing.assert_allclose(m.ratio(zero, one)[:, 0, 0], 1 / k_max, rtol=1e-6)
    assert np.array_equal(m.ratio(after, after), np.ones_like(after))  # equal -> exactly 1
    # an estimate below black has the noise of black, not less: k stays finite (the old
    # clamp of the *variance* at 0 gave k ~ 1e3 where A·d + B < 0)
    d = np.full((3, 1, 1), -0.05, np.float32)
    np.testing.assert_allclose(m.ratio(one * 0.3, d), m.ratio(one * 0.3, zero), rtol=1e-6)


def test_torch_ratio_matches_numpy():
    rng = np.random.default_rng(2)
    after, before = (rng.uniform(-0.5, 1.5, (2, 3, 8, 8)).astype(np.float32) for _ in range(2))
    a, b = np.stack([A, A * 2]), np.stack([B, B * 3])
    ref = NoiseModel(a, b).ratio(after, before)
    got = NoiseModel(a, b).ratio(torch.from_numpy(after), torch.from_numpy(before))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6)


def test_sampled_noise_has_the_model_variance():
    m = NoiseModel(A, B)
    rng = np.random.default_rng(3)
    for level in (0.0, 0.05, 0.4):
        s = np.full((3, 200, 200), level, np.float32)
        n = m.sample(s, rng.standard_normal(s.shape, dtype=np.float32))
        var = n.reshape(3, -1).var(axis=1)
        np.testing.assert_allclose(var, A * level + B, rtol=0.05)


@pytest.mark.parametrize(
    "a,b,needle",
    [
        ([1e-3, -1e-3, 1e-3], [1e-6] * 3, "finite and >= 0"),
        ([1e-3] * 3, [np.nan] * 3, "finite and >= 0"),
        ([1e-3] * 3, [1e-6] * 2, "must both be"),
    ],
)
def test_bad_parameters_are_refused(a, b, needle):
    with pytest.raises(InputError, match=needle):
        NoiseModel(a, b)


def test_the_formula_works_on_python_scalars_too():
    assert variance(-1.0, 2.0, 3.0) == 3.0 and variance(0.5, 2.0, 3.0) == 4.0


def test_data_gen_imports_nothing_from_residual_train():
    """The physics and data layer stands alone (docs/design.md §6)."""
    import subprocess
    import sys

    code = (
        "import sys, importlib, pkgutil, data_gen\n"
        "for m in pkgutil.walk_packages(data_gen.__path__, 'data_gen.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] == 'residual_train')\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
