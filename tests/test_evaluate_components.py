"""Evaluation of a components model on photographs with measured depth
(residual_train/evaluate/components.py): the card's chain rendered through real depth, each
component against its classical baselines, masked metrics, the brightness-consistent check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_gen.generate import generate
from residual_train.deploy import load_model
from residual_train.evaluate import depth_sets
from residual_train.evaluate.components import (
    card_chain,
    evaluate_components,
    render_photograph,
)
from residual_train.evaluate.run import card_bank
from residual_train.release.export import export
from residual_train.training.train import train
from tests.conftest import compose_cfg
from tests.helpers.cli import run_module as run
from tests.helpers.training import train_cfg

COMPONENTS = "components=[fog,defocus,blur,noise]"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny fog + defocus + blur + noise model, exported (its card holds the chain's
    settings)."""
    d = tmp_path_factory.mktemp("ce")
    generate(
        compose_cfg(
            f"out_dir={d / 'ds'}",
            COMPONENTS,
            "+source.depth=[1,20]",
            "shards=2",
            "samples_per_shard=16",
            "patch_size=48",
            "source.size=128",
            "lens.size=15",
            "component.fog.beta=[0.05,0.2]",
        )
    )
    train(train_cfg(f"data.dir={d / 'ds'}", f"run_dir={d / 'run'}", "trainer.max_epochs=1"))
    export(d / "run" / "checkpoints" / "last.ckpt", d / "exp")
    return d / "exp"


def test_the_card_carries_the_chain_it_was_trained_on(model):
    m = load_model(str(model))
    chain = card_chain(m.card)
    assert chain.names == ("fog", "defocus", "blur", "noise")
    assert list(chain["fog"].settings.beta) == [0.05, 0.2]  # not the YAML default


def test_a_photograph_is_rendered_through_the_chain_and_a_field_varying_lens(model):
    m = load_model(str(model))
    item = depth_sets.crop_centre(depth_sets.load("motorcycle", shrink_factor=4), 96)
    chain, bank = card_chain(m.card), card_bank(m.card)
    noise = m.noise_model(400)
    r = render_photograph(chain, bank, item.image, item.depth, noise, np.random.default_rng(0))
    a, mgn = r["arrays"], r["margin"]
    assert a["input"].shape == (3, 96 - 2 * mgn, 96 - 2 * mgn)
    assert r["index"].shape == a["input"].shape[1:]
    # fog thickens with depth: the far half lost more contrast than the near half
    assert r["record"]["fog_beta"] >= 0.05
    moved = np.abs(a["before_defocus"] - a["clean"]).mean(0)  # what the fog did
    z = item.depth[mgn:-mgn, mgn:-mgn]
    assert moved[z > np.median(z)].mean() > moved[z <= np.median(z)].mean()


def test_every_component_is_measured_against_its_baselines_on_valid_depth(model, tmp_path):
    m = load_model(str(model))
    item = depth_sets.crop_centre(depth_sets.load("motorcycle", shrink_factor=4), 80)
    item.valid[:, :20] = False  # pretend the left columns had no measured depth
    base = {"fog": ["oracle_t"], "defocus": ["wiener_oracle"], "noise": ["wavelet"]}
    res = evaluate_components(m, [item], [400.0], base, min_pixels=300, progress=False)
    rows = [r for r in res["per_image"] if r["component"] != "all"]
    assert [r["component"] for r in rows] == ["fog", "defocus", "blur", "noise"]
    fog = rows[0]  # inverting with the true transmission beats leaving the fog in by far
    assert fog["psnr_oracle_t"] > fog["psnr_input"] + 5
    assert "psnr_wiener_oracle" in rows[1] and "psnr_wavelet" in rows[3]
    kept = {r["component"]: r for r in res["per_iso"] if "bins" in r}
    # the exact maps keep the camera's noise at the corrected brightness: every bin within
    # 5 standard errors of a sample std (and the brightest, where white clips, below 1)
    for b in kept["noise_kept_exact"]["bins"]:
        if b["enough"] and b["hi"] < 1:
            assert abs(b["ratio"] - 1) < 5 / np.sqrt(2 * b["pixels"]), b
    summary = {r["component"]: r for r in res["per_iso"] if "bins" not in r}
    assert summary["fog"]["images"] == 1 and "beats_oracle_t" in summary["fog"]
    json.dumps(res)  # metrics.json can hold it


def test_the_cli_evaluates_a_components_model_on_photographs_with_depth(model, tmp_path):
    out = tmp_path / "eval"
    r = run(
        "residual_train.evaluate",
        f"model={model}",
        "images=[motorcycle]",
        f"out={out}",
        "isos=[400]",
        "shrink=4",
        "max_size=80",
        "component_baselines={fog: [oracle_t], defocus: [], blur: [], noise: [wavelet]}",
        "cache=null",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["components"] == ["fog", "defocus", "blur", "noise"]
    assert (out / "index.html").read_text().count("<tr>") > 5
    bad = run(
        "residual_train.evaluate", f"model={model}", "images=[atlantis]", f"out={tmp_path / 'x'}"
    )
    assert bad.returncode == 2 and "depth set 'atlantis' is unknown" in bad.stderr
    assert not (tmp_path / "x").exists()
