"""Noise model conversions, ISO sampling and darktable profiles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_gen.core.errors import InputError
from data_gen.sensor import DarktableNoiseModel, ISOSampler, RawNoiseModel
from tests.conftest import shared


def test_raw_model_in_normalised_units_matches_the_dn_formula():
    m = RawNoiseModel(k0=9.0, k1=0.63, ob=512, white=16383, iso=[800])
    p = m.params(800)
    s_dn = np.array([600.0, 4000.0, 16000.0])
    var_dn = (0.63 * (s_dn - 512) + 9.0) * 8.0
    v = (s_dn - 512) / (16383 - 512)
    var_norm = p.model.variance(v[None, :, None].astype(np.float32))[:, :, 0]
    np.testing.assert_allclose(var_norm[0], var_dn / (16383 - 512) ** 2, rtol=1e-5)
    np.testing.assert_allclose(p.k0, 9.0, rtol=1e-6)
    np.testing.assert_allclose(p.k1, 0.63, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(k1=-0.1), "sensor.k1 = -0.1"),
        (dict(k0=-1.0), "sensor.k0 = -1"),
        (dict(white=500), "sensor.white = 500"),
        (dict(iso=[0]), "ISO must be > 0"),
        (dict(iso=[100, -5]), "sensor.iso contains -5"),
        (dict(iso={"min": 100}), "min and max"),
        (dict(k1=[0.1, 0.2]), "one per channel"),
    ],
)
def test_impossible_sensor_values_are_refused(kwargs, needle):
    args = dict(k0=9.0, k1=0.5, ob=512, white=16383, iso=[100])
    args.update(kwargs)
    with pytest.raises(InputError, match=needle.replace("(", r"\(")):
        RawNoiseModel(**args)


def test_iso_sampler_list_and_log_uniform():
    rng = np.random.default_rng(0)
    lst = ISOSampler([100, 1600])
    assert {lst.draw(rng) for _ in range(50)} == {100.0, 1600.0}
    rge = ISOSampler({"min": 100, "max": 6400})
    d = np.array([rge.draw(rng) for _ in range(4000)])
    assert d.min() >= 100 and d.max() <= 6400
    # log-uniform: the log-midpoint 800 splits the draws in half
    assert abs((d < 800).mean() - 0.5) < 0.04


def test_darktable_real_profile_interpolates_between_listed_isos():
    path = shared("darktable", "noiseprofiles.json")
    m = DarktableNoiseModel(str(path), "Canon", "EOS 550D", iso=[100, 6400])
    doc = json.loads(path.read_text())
    prof = next(
        mo
        for mk in doc["noiseprofiles"]
        if mk["maker"] == "Canon"
        for mo in mk["models"]
        if mo["model"] == "EOS 550D"
    )["profiles"]
    listed = {p["iso"]: p for p in prof if not p.get("skip")}
    lo, hi = 100, 200
    assert lo in listed and hi in listed
    p_lo, p_hi, p_mid = m.params(lo), m.params(hi), m.params(150)
    np.testing.assert_allclose(p_lo.a, listed[lo]["a"], rtol=1e-6)
    np.testing.assert_allclose(p_mid.a, (p_lo.a + p_hi.a) / 2, rtol=1e-6)
    np.testing.assert_allclose(p_mid.b, (p_lo.b + p_hi.b) / 2, rtol=1e-5)


def test_darktable_unknown_camera_names_the_camera_and_file():
    path = shared("darktable", "noiseprofiles.json")
    with pytest.raises(InputError) as e:
        DarktableNoiseModel(str(path), "Canon", "EOS 9999Z", iso=[100])
    assert "EOS 9999Z" in str(e.value) and str(path) in str(e.value)
    assert "closest: Canon EOS" in str(e.value)  # suggests near names


def test_darktable_iso_outside_profile_is_refused():
    path = shared("darktable", "noiseprofiles.json")
    with pytest.raises(InputError, match="covers ISO"):
        DarktableNoiseModel(str(path), "Canon", "EOS 550D", iso=[10])


def _profile(tmp_path, b):
    doc = {
        "version": 1,
        "noiseprofiles": [
            {
                "maker": "Acme",
                "models": [
                    {
                        "model": "X1",
                        "profiles": [
                            {"name": "x", "iso": 100, "a": [1e-5] * 3, "b": b},
                            {"name": "y", "iso": 400, "a": [4e-5] * 3, "b": [4e-7] * 3},
                        ],
                    }
                ],
            }
        ],
    }
    p = tmp_path / "np.json"
    p.write_text(json.dumps(doc))
    return str(p)


def test_negative_b_is_clamped_with_a_warning_or_refused(tmp_path, caplog):
    path = _profile(tmp_path, [-2e-7, 1e-7, 1e-7])
    with pytest.raises(InputError, match=r"ISO 100 has negative b.*negative_b=clamp"):
        DarktableNoiseModel(path, "Acme", "X1", iso=[100], negative_b="error")
    m = DarktableNoiseModel(path, "Acme", "X1", iso=[100, 400], negative_b="clamp")
    assert "negative b" in caplog.text
    p = m.params(100)
    assert p.b[0] == 0.0 and p.b[1] == pytest.approx(1e-7)
    # the variance is never negative, also below black
    assert (p.model.variance(np.full((3, 2, 2), -0.01, np.float32)) >= 0).all()
