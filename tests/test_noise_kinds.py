"""The sensor-noise kinds (data_gen/noise_kinds/, sensor.noise=...): the default is the noise
step of before; physical and dark-frame noise are the same realisation on numpy, torch and
the reference, shared by every target that keeps the noise; their measured statistics
match the configured parameters; B is the total signal-independent variance; bad settings
are refused in one line; the default keeps every dataset's config hash."""

from __future__ import annotations

import numpy as np
import pytest

from data_gen import chain_batch
from data_gen.backend import NumpyBackend, TorchBackend
from data_gen.calibrate.dark import tukey_shape
from data_gen.chain import chain_names, render_chain, stored_names
from data_gen.components import Chain, DrawContext
from data_gen.core.errors import InputError
from data_gen.generate import build_pipeline, config_hash, generation_config
from data_gen.noise import NoiseModel
from data_gen.noise_kinds import NoiseContext, batch_draws, draw_noise
from data_gen.physics.sensor_noise import crop_position, synthetic_shading
from data_gen.render import batch_noise_model, draw_sample
from data_gen.render_chain import SampleRenderer
from data_gen.sensor import build_sensor
from tests.conftest import compose_cfg
from tests.helpers.scenes import lens, scene

SPAN = 16383 - 512  # generic_aps_c: white − ob, DN


def sensor_cfg(*overrides: str) -> dict:
    return compose_cfg(*overrides)["sensor"]


def physical(*overrides: str, channels: int = 3):
    return build_sensor(sensor_cfg("sensor.noise=physical", *overrides), channels)


def flat(sensor, iso: float, level: float, n: int, size: int, cfa: str | None = None,
         seed: int = 0, frame=(1024, 1536), at=None):  # fmt: skip
    """``n`` flat patches of ``size`` photosites at ``level`` through ``sensor``'s noise kind:
    the noise ``(n, C', h, w)``, the drawn records, the per-sample draws and the model."""
    rng = np.random.default_rng(seed)
    kind, p = sensor.noise, sensor.params(iso)
    model = batch_noise_model([p] * n, cfa)
    ctxs = []
    for _ in range(n):
        y, x = at if at is not None else (
            int(rng.integers(0, frame[0] - size)) // 2 * 2,
            int(rng.integers(0, frame[1] - size)) // 2 * 2,
        )  # fmt: skip
        ctxs.append(NoiseContext(iso, y, x, (size, size), frame, cfa, 3))
    shape = (n, *ctxs[0].stored)
    normal = rng.standard_normal(shape, dtype=np.float32)
    draws, records = zip(*(draw_noise(kind, rng, c) for c in ctxs), strict=True)
    signal = np.full(shape, level, np.float32)
    stacked = batch_draws(list(draws), NumpyBackend())
    return kind.sample(signal, model, normal, stacked), records, stacked, model


def row_sigma(n: np.ndarray) -> np.ndarray:
    """Row-noise σ per channel (normalised) of flat-patch noise ``(N, C, h, w)``: the spread
    of row means about each patch's mean, less the pixel noise they average."""
    w = n.shape[-1]
    rows = n.mean(-1) - n.mean((-1, -2))[..., None]  # (N, C, h)
    var_rho = rows.var(axis=(0, 2), ddof=1) * n.shape[2] / (n.shape[2] - 1)
    pix = (n - n.mean(-1, keepdims=True)).var(axis=(0, 2, 3))
    return np.sqrt(np.maximum(var_rho - pix / (w - 1), 0))


# ---- the default -------------------------------------------------------------------------


def test_the_default_kind_draws_nothing_and_samples_sigma_times_r():
    sensor = build_sensor(sensor_cfg())
    kind = sensor.noise
    assert kind.name == "poisson_gaussian" and kind.default and kind.meta_fields(4) == []
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    draws, rec = draw_noise(kind, rng, NoiseContext(800, 0, 0, (8, 8), (64, 64), None, 3))
    assert draws == {} and rec == {} and rng.bit_generator.state == before
    s = rng.uniform(-0.1, 1, (2, 3, 8, 8)).astype(np.float32)
    r = rng.standard_normal(s.shape, dtype=np.float32)
    model = NoiseModel(np.full((2, 3), 1e-3, np.float32), np.full((2, 3), 1e-6, np.float32))
    assert np.array_equal(kind.sample(s, model, r, {}), model.sample(s, r))
    # the sensor's B is its own b: nothing added
    p = sensor.params(1600)
    np.testing.assert_allclose(p.b, 9.0 * 16 / SPAN**2, rtol=1e-6)


def test_the_default_keeps_the_config_hash_and_only_the_chosen_kind_counts():
    base = compose_cfg()
    legacy = {**base, "sensor": {k: v for k, v in base["sensor"].items()
                                 if k not in ("noise", "physical", "dark")}}  # fmt: skip
    h = config_hash(generation_config(base))
    assert h == config_hash(generation_config(legacy))  # as before the kinds existed
    assert "physical" not in generation_config(base)["sensor"]
    same = compose_cfg("sensor.noise=poisson_gaussian", "sensor.physical.row_sigma_dn=1.0")
    assert config_hash(generation_config(same)) == h  # the unused kind's settings do not count
    phys = generation_config(compose_cfg("sensor.noise=physical"))
    assert phys["sensor"]["noise"] == "physical" and "physical" in phys["sensor"]
    other = generation_config(
        compose_cfg("sensor.noise=physical", "sensor.physical.quantise=false")
    )
    assert len({h, config_hash(phys), config_hash(other)}) == 3


# ---- one realisation: numpy, torch, the reference, every target --------------------------


def _draw_batch(chain: Chain, kind, sensor, n: int, p: int, isos):
    psfs = np.stack([lens(1.0), lens(2.5)])
    m = chain.margin(15)
    w = p + 2 * m
    wins, depths, params, normals, draws, models = [], [], [], [], [], []
    for i in range(n):
        s, depth, rng = scene(i, w, smooth_depth=False)
        prm, _ = chain.draw(rng, DrawContext((w, w), (0, 0, w, w), depth, psfs[i % 2], 3))
        normal = rng.standard_normal((3, p, p)).astype(np.float32)
        ctx = NoiseContext(isos[i], 2 * i, 4 * i, (p, p), (200, 300), None, 3)
        d, _ = draw_noise(kind, rng, ctx)
        wins.append(s)
        depths.append(depth)
        params.append(prm)
        normals.append(normal)
        draws.append(d)
        models.append(sensor.params(isos[i]).model)
    return psfs, m, wins, depths, params, normals, draws, models


def assert_same_noise(got: np.ndarray, want: np.ndarray, step: float | None, what) -> None:
    """Equal to float32 rounding (2e-6); with quantisation a signal that differs by float
    rounding may round to the neighbouring DN: rare pixels (< 0.2 %) one step apart."""
    d = np.abs(got - want)
    off = d > 2e-6
    if step is None:
        assert not off.any(), (what, float(d.max()))
        return
    assert off.mean() < 2e-3, (what, float(off.mean()))
    np.testing.assert_allclose(d[off], step, atol=2e-6, err_msg=str(what))


@pytest.mark.parametrize("quantise", [True, False])
@pytest.mark.parametrize("names", [["blur", "noise"], ["relight", "fog", "blur", "noise"]])
@pytest.mark.parametrize("backend", [NumpyBackend(), TorchBackend("cpu")], ids=["numpy", "torch"])
def test_the_batched_chain_matches_the_reference_with_physical_noise(names, backend, quantise):
    sensor = physical(f"sensor.physical.quantise={str(quantise).lower()}")
    kind, chain = sensor.noise, Chain.defaults(names)
    isos = [400, 1600, 6400, 1600]
    psfs, m, wins, depths, params, normals, draws, models = _draw_batch(
        chain, kind, sensor, 4, 24, isos
    )
    refs = []
    for i in range(4):
        t = render_chain(wins[i], chain, params[i], depths[i], models[i], normals[i], m, kind,
                         draws[i])  # fmt: skip
        refs.append({k: np.minimum(t[chain_names(k)], 1) for k in stored_names(names)})
    noise = NoiseModel(np.stack([q.A for q in models]), np.stack([q.B for q in models]))
    batch = chain_batch.Batch(np.stack(wins), np.stack(depths), params, np.arange(4) % 2, psfs)
    out = chain_batch.render(chain, batch, m, noise, backend.asarray(np.stack(normals)), backend,
                             None, kind=kind, draws=batch_draws(draws, backend))  # fmt: skip
    for k in out:
        assert_same_noise(backend.numpy(out[k]), np.stack([r[k] for r in refs]),
                          1 / SPAN if quantise else None, k)  # fmt: skip


def test_numpy_and_torch_generators_render_the_same_physical_bayer_noise():
    cfg = compose_cfg("sensor.noise=physical", "layout=rggb", "patch_size=24")
    pipe = build_pipeline(cfg)

    def specs():
        frame = pipe.source.frame(np.random.default_rng(0))
        return [draw_sample(frame, 100 + i, 24, pipe.min_frame - 24 + 1, (0.25, 1.0, 0.0),
                            pipe.sensor, pipe.bank) for i in range(5)]  # fmt: skip

    a, rec_a = SampleRenderer.for_pipeline(pipe, backend="numpy")(specs())
    b, rec_b = SampleRenderer.for_pipeline(pipe, backend="torch")(specs())
    assert [sorted(r) for r in rec_a] == [sorted(r) for r in rec_b]
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(rec_a, rec_b, strict=True) for k in x)
    for k in a:
        assert a[k].shape == (5, 4, 12, 12)
        assert_same_noise(b[k], a[k], 1 / SPAN, k)
    # noise per photosite: the packed planes hold independent draws, quantised to DN
    n = a["noise_blur"] - a["blur"]
    dn = a["noise_blur"][a["noise_blur"] < 1].astype(np.float64) * SPAN + 512
    assert np.abs(dn - np.rint(dn)).max() < 2e-3
    assert abs(np.corrcoef(n[:, 0].ravel(), n[:, 3].ravel())[0, 1]) < 0.2


def test_every_target_that_keeps_the_noise_carries_the_same_realisation():
    names = ["relight", "fog", "blur", "motion", "noise"]
    sensor = physical()
    chain = Chain.defaults(names)
    s, depth, rng = scene(0, 96, smooth_depth=False)
    m = chain.margin(15)
    params, _ = chain.draw(rng, DrawContext((96, 96), (0, 0, 96, 96), depth, lens(), 3))
    hw = (96 - 2 * m, 96 - 2 * m)
    normal = rng.standard_normal((3, *hw)).astype(np.float32)
    draws, _ = draw_noise(sensor.noise, rng, NoiseContext(3200, m, m, hw, (96, 96), None, 3))
    model = sensor.params(3200).model
    t = render_chain(s, chain, params, depth, model, normal, m, sensor.noise, draws)
    n = t["input"] - t["before_noise"]
    for c in names[:-1]:
        kept = Chain(tuple(k for k in chain.body if k.name != c))
        clean_target = render_chain(s, kept, params, depth, margin=m)
        np.testing.assert_allclose(t[f"without_{c}"] - clean_target["input"], n, atol=1e-6)
    # the input is the sensor's output: whole DN
    dn = t["input"].astype(np.float64) * SPAN + 512
    assert np.abs(dn - np.rint(dn)).max() < 2e-3


# ---- statistics of rendered flat patches --------------------------------------------------


@pytest.mark.parametrize("cfa", [None, "RGGB"])
def test_row_noise_is_one_offset_per_sensor_row_with_the_configured_sigma(cfa):
    sensor = physical("sensor.physical.shading=false")
    n, _, _, _ = flat(sensor, 1600, 0.002, 300, 64, cfa)  # a dark flat: little shot noise
    got = row_sigma(n.astype(np.float64)) * SPAN
    np.testing.assert_allclose(got, 3.0, rtol=0.10)  # configured: 3.0 DN at ISO 1600
    if cfa:  # R and Gr sit on one sensor row, Gb and B on the next
        rows = n.mean(-1) - n.mean((-1, -2))[..., None]
        corr = np.corrcoef(rows.transpose(1, 0, 2).reshape(4, -1))
        # measured 0.38: the row offsets' share of a row mean's variance (9 of 23.5 DN²)
        assert corr[0, 1] > 0.3 and corr[2, 3] > 0.3 and abs(corr[0, 2]) < 0.05


def test_read_noise_has_the_configured_tukey_lambda_and_the_output_whole_dn():
    sensor = physical("sensor.physical.shading=false", "sensor.physical.row_sigma_dn=0",
                      "sensor.physical.black_error_dn=0")  # fmt: skip
    n, _, _, _ = flat(sensor, 1600, 0.0, 120, 32)
    e = n[:, 1].astype(np.float64).ravel() * SPAN
    shape = tukey_shape(np.random.default_rng(0).choice(e, 100_000, replace=False))
    assert shape["kind"] == "tukey_lambda"
    assert shape["lambda"] == pytest.approx(-0.15, abs=0.03)  # configured −0.15
    assert e.var() == pytest.approx(9.0 * 16, rel=0.03)  # k0·g: read + rounding
    steps = e + 512
    assert np.abs(steps - np.rint(steps)).max() < 1e-3  # quantised to whole DN
    m, _, _, _ = flat(physical("sensor.physical.quantise=false", "sensor.physical.shading=false"),
                      1600, 0.0, 20, 32)  # fmt: skip
    frac = np.abs(m * SPAN - np.rint(m * SPAN))
    assert (frac < 1e-3).mean() < 0.01  # without quantisation: continuous


def test_black_level_offsets_are_per_sample_with_the_configured_sigma():
    sensor = physical("sensor.physical.shading=false", "sensor.physical.row_sigma_dn=0")
    n, records, _, _ = flat(sensor, 6400, 0.0, 1500, 32)
    offsets = np.stack([r["noise_black_dn"] for r in records])  # (N, C) DN
    np.testing.assert_allclose(offsets.std(0), 2.4, rtol=0.10)  # configured 2.4 DN at 6400
    means = n.mean((-1, -2)) * SPAN
    for c in range(3):  # each patch's mean level moves with its own offset
        assert np.corrcoef(means[:, c], offsets[:, c])[0, 1] > 0.9  # 0.95 expected


def test_dark_shading_is_the_configured_pattern_at_the_patch_position():
    sensor = physical()
    at = (400, 600)
    n, records, _, _ = flat(sensor, 6400, 0.0, 400, 48, at=at)
    pos = records[0]["noise_shading_yx"]
    assert pos == crop_position(*at, (48, 48), (1024, 1536), (512, 768), (48, 48))
    unit = synthetic_shading((512, 768), 0)
    want = unit[[0, 1, 3], pos[0] : pos[0] + 48, pos[1] : pos[1] + 48] * 9.6  # DN at 6400
    got = n.mean(0) * SPAN
    for c in range(3):
        assert np.corrcoef(got[c].ravel(), want[c].ravel())[0, 1] >= 0.95


@pytest.mark.parametrize("iso", [400, 6400])
def test_b_is_the_measured_signal_independent_variance(iso):
    sensor = physical()
    n, _, _, model = flat(sensor, iso, 0.0, 600, 32, seed=iso)
    measured = (n.astype(np.float64) ** 2).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(measured, model.B[0], rtol=0.05)
    # B is the sensor's temporal b plus the shading's mean square: more than the default's
    pg = build_sensor(sensor_cfg()).params(iso).b
    assert (model.B[0] > pg).all()
    np.testing.assert_allclose(model.B[0] - pg, (0.15 * iso / 100) ** 2 / SPAN**2, rtol=0.02)
    # and at a signal: A·s + B
    s = 0.2
    n2, _, _, _ = flat(sensor, iso, s, 300, 32, seed=iso + 1)
    np.testing.assert_allclose(n2.astype(np.float64).var(axis=(0, 2, 3)),
                               model.variance(np.full((1, 3, 1, 1), s, np.float32))[0, :, 0, 0],
                               rtol=0.05)  # fmt: skip


# ---- bad settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["sensor.noise=gaussian"], "sensor.noise = 'gaussian': use one of dark_frames, physical, poisson_gaussian"),
        (["sensor.noise=physical", "sensor.physical.row_sigma_dn=20"],
         "sensor.physical.row_sigma_dn: at ISO 100 the row ([20.0, 20.0, 20.0] DN)"),
        (["sensor.noise=physical", "sensor.physical.tukey_lambda=-0.6"],
         "sensor.physical.tukey_lambda = [[-0.6, -0.6, -0.6]]: Tukey-λ must be > -0.4"),
        (["sensor.noise=physical", "+sensor.physical.gain=2"],
         "sensor.physical.gain: unknown setting"),
        (["sensor.noise=physical", "sensor.physical.quantise=maybe"],
         "sensor.physical.quantise = 'maybe'"),
        (["sensor.noise=physical", "sensor.physical.black_error_dn=[1,2]"],
         "sensor.physical.black_error_dn has 2 entries; give one per ISO of isos (4)"),
        (["sensor.noise=physical", "sensor.physical.isos=[100,800]",
          "sensor.physical.row_sigma_dn=[1,2]", "sensor.physical.black_error_dn=0",
          "sensor.physical.shading_dn=0"],
         "sensor.physical.row_sigma_dn: the sensor draws ISO 100..6400 but the table covers "
         "ISO 100..800"),
        (["sensor.noise=physical", "sensor.physical.black_error_dn=-1"],
         "sensor.physical.black_error_dn = [[-1.0, -1.0, -1.0]]: must be >= 0"),
        (["sensor.noise=dark_frames"], "sensor.noise = dark_frames needs sensor.dark"),
        (["sensor.noise=physical", "sensor.dark=/nope/dark.json"],
         "sensor.dark = '/nope/dark.json': no such file"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_in_one_line_naming_the_key(overrides, needle):
    with pytest.raises(InputError) as e:
        build_sensor(sensor_cfg(*overrides))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg, msg


# ---- from a calibration: physical parts and real dark frames ------------------------------


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """Ten synthetic dark frames of generic_aps_c at ISO 1600 (row noise 2.5 DN, Tukey-λ
    −0.15 read noise, a 4 DN dark shading, hot pixels) calibrated with a hypothesised
    k1: the calibration folder, the sensor config it wrote (paths absolute) and the truth."""
    import yaml

    from data_gen.calibrate.noise import run
    from data_gen.calibrate.synthetic import SyntheticSensor, dark_shading, write_frames
    from data_gen.core.cli import compose_config
    from tests.conftest import CONF

    d = tmp_path_factory.mktemp("darkcal")
    shape = (256, 384)
    rng = np.random.default_rng(5)
    p = build_sensor(sensor_cfg()).params(1600)
    hot = np.stack([rng.integers(0, shape[0], 12), rng.integers(0, shape[1], 12)], 1)
    truth = SyntheticSensor(p.a.astype(float), p.b.astype(float), p.ob, p.white, 1600,
                            row_sigma=2.5, tukey_lambda=-0.15,
                            shading=dark_shading(shape, rng, 4.0), hot=hot)  # fmt: skip
    write_frames(d / "raws", truth, [np.zeros(shape)] * 10, "dark_iso1600", seed=7)
    out = d / "calib"
    run(compose_config(CONF, "calibrate_noise", [f"raws={d / 'raws'}", f"out={out}", "k1=0.63"]))
    cfg = yaml.safe_load((out / "sensor.yaml").read_text())
    cfg["dark"] = str(out / cfg["dark"])  # as sensor=calib/sensor.yaml makes it
    return out, cfg, truth


def test_the_calibration_names_its_dark_frames_and_keeps_the_default(calibrated):
    import json

    out, cfg, _ = calibrated
    assert cfg["noise"] == "poisson_gaussian" and cfg["dark"].endswith("dark.json")
    doc = json.loads((out / "dark.json").read_text())["isos"]["1600"]
    assert len(doc["frame_paths"]) == 10 and all(
        p.endswith(".dng") and __import__("os").path.isfile(p) for p in doc["frame_paths"]
    )
    base = compose_cfg()
    legacy = {**base, "sensor": {k: v for k, v in cfg.items() if k not in ("noise", "dark")}}
    new = {**base, "sensor": cfg}
    assert config_hash(generation_config(new)) == config_hash(generation_config(legacy))


def test_physical_noise_from_a_calibration_has_the_cameras_statistics(calibrated):
    _, cfg, truth = calibrated
    sensor = build_sensor({**cfg, "noise": "physical"})
    kind = sensor.noise
    np.testing.assert_allclose(kind.row.at(1600), 2.5, rtol=0.10)  # calibrated from the frames
    n, _, _, model = flat(sensor, 1600, 0.0, 300, 64, "RGGB", frame=(256, 384))
    np.testing.assert_allclose(row_sigma(n.astype(np.float64)) * SPAN, 2.5, rtol=0.12)
    e = (n - n.mean(-1, keepdims=True))[:, 0].astype(np.float64).ravel() * SPAN
    e = e - e.mean()
    lam = tukey_shape(np.random.default_rng(1).choice(e, 100_000, replace=False))["lambda"]
    assert lam == pytest.approx(kind.lam.at(1600)[0], abs=0.03)
    assert lam == pytest.approx(-0.15, abs=0.04)
    measured = (n.astype(np.float64) ** 2).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(measured, model.B[0], rtol=0.05)
    # the dark shading the calibration measured, at the patch's position
    m, recs, _, _ = flat(sensor, 1600, 0.0, 300, 64, "RGGB", frame=(256, 384), at=(64, 96))
    r, c = recs[0]["noise_shading_yx"]
    from data_gen.cfa import pack

    calib = kind.shading.crop(1600, [0, 1, 2, 3], r, c, 32, 32)
    want = pack(truth.shading, "RGGB")[:, r : r + 32, c : c + 32]
    got = m.mean(0) * SPAN
    for p in range(4):  # measured 0.97 against the map, 0.89 against the camera's truth
        assert np.corrcoef(got[p].ravel(), calib[p].ravel())[0, 1] > 0.95
        assert np.corrcoef(got[p].ravel(), want[p].ravel())[0, 1] > 0.85


@pytest.mark.parametrize("cfa", [None, "RGGB"])
def test_dark_frames_are_sampled_pattern_aligned_with_the_shading_taken_out(calibrated, cfa):
    import json

    from data_gen.cfa import pack
    from data_gen.raw import read_raw

    out, cfg, truth = calibrated
    sensor = build_sensor({**cfg, "noise": "dark_frames"})
    n, recs, _, model = flat(sensor, 1600, 0.0, 200, 32, cfa, frame=(256, 384))
    doc = json.loads((out / "dark.json").read_text())["isos"]["1600"]
    shading = np.load(out / doc["shading_file"])
    planes = [0, 1, 2, 3] if cfa else [0, 1, 3]
    h = 16 if cfa else 32
    for i in (0, 7):
        j, (r, c) = recs[i]["noise_dark_frame"], recs[i]["noise_dark_yx"]
        raw = read_raw(doc["frame_paths"][j])
        f = pack(raw.mosaic, raw.pattern).astype(np.float32)[planes, r : r + h, c : c + h]
        want = f - np.asarray(doc["black"], np.float32)[planes, None, None]
        want = (want - shading[planes, r : r + h, c : c + h]) / np.float32(SPAN)
        np.testing.assert_allclose(n[i], want, atol=1e-6)  # s = 0: the dark part alone
    # B: the measured mean square of the frames' signal-independent part (good photosites)
    _, bad = sensor.noise.frames(1600)
    good = np.stack([~bad[planes, r : r + h, c : c + h]
                     for r, c in (q["noise_dark_yx"] for q in recs)])  # fmt: skip
    ms = np.where(good, n.astype(np.float64) ** 2, np.nan)
    np.testing.assert_allclose(np.nanmean(ms, axis=(0, 2, 3)), model.B[0], rtol=0.05)
    assert (n * SPAN > 300).any()  # hot pixels are part of the real frames
    # the temporal variance the calibration measured: read (Tukey-λ) + row + rounding
    np.testing.assert_allclose(model.B[0] * SPAN**2, truth.truth()["read_var_dn2"][planes],
                               rtol=0.08)  # fmt: skip


def test_dark_frames_refuse_isos_without_frames(calibrated):
    _, cfg, _ = calibrated
    with pytest.raises(InputError, match=r"sensor.iso = \[1600.0, 1600.0\]|sensor.iso"):
        build_sensor({**cfg, "noise": "dark_frames", "iso": {"min": 1600, "max": 1600}})
    with pytest.raises(InputError, match="physical.row_sigma_dn: the sensor draws ISO 1600"):
        build_sensor({**cfg, "noise": "physical", "physical": {"isos": [100, 800],
                                                                "row_sigma_dn": [1, 2]}})  # fmt: skip


# ---- datasets and on-the-fly batches -------------------------------------------------------


@pytest.mark.parametrize("layout", ["rgb", "rggb"])
def test_a_physical_dataset_stores_the_draws_and_the_total_b_in_meta(tmp_path, layout):
    import h5py
    import yaml

    from data_gen.generate import generate

    d = tmp_path / "ds"
    generate(compose_cfg(f"out_dir={d}", "sensor.noise=physical", f"layout={layout}", "shards=1"))
    saved = yaml.safe_load((d / "config.yaml").read_text())
    assert saved["sensor"]["noise"] == "physical" and saved["sensor"]["physical"]["quantise"]
    c = 4 if layout == "rggb" else 3
    with h5py.File(next(d.glob("shard-*.h5"))) as f:
        meta = f["meta"][:]
        x, blur = f["noise_blur"][:], f["blur"][:]
    assert meta["noise_row_dn"].shape == (12, c) and meta["noise_shading_yx"].shape == (12, 2)
    sensor = build_sensor(saved["sensor"])
    for m in meta:
        p = sensor.params(float(m["iso"]))
        g = float(m["iso"]) / 100
        colour = [0, 1, 1, 2] if c == 4 else [0, 1, 2]
        np.testing.assert_allclose(m["k0"], p.b[colour] * SPAN**2 / g, rtol=1e-5)  # B total
        np.testing.assert_allclose(m["noise_row_dn"], sensor.noise.row.at(m["iso"])[colour],
                                   rtol=1e-5)  # fmt: skip
    dn = x[x < 1].astype(np.float64) * SPAN + 512
    assert np.abs(dn - np.rint(dn)).max() < 2e-3
    assert not np.array_equal(x, blur)


def test_onthefly_batches_draw_physical_noise_reproducibly():
    from data_gen.onthefly import OnTheFlyRenderer

    pipe = build_pipeline(compose_cfg("sensor.noise=physical", "layout=rggb"))
    r = OnTheFlyRenderer(pipe, patch=16, batch=6, pool=2, threads=1)
    try:
        a, meta = r.render(3)
        b, meta2 = r.render(3)
        c, _ = r.render(4)
    finally:
        r.close()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    assert meta.tobytes() == meta2.tobytes() and not np.array_equal(
        a["noise_blur"], c["noise_blur"]
    )
    assert meta["noise_black_dn"].shape == (6, 4) and (meta["noise_lambda"] == -0.15).all()
    x = a["noise_blur"].numpy()
    dn = x[x < 1].astype(np.float64) * SPAN + 512
    assert np.abs(dn - np.rint(dn)).max() < 2e-3
    n = (a["noise_blur"] - a["blur"]).numpy()
    np.testing.assert_allclose(a["noise"].numpy() - a["clean"].numpy(), n, atol=2e-6)
