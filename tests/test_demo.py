"""The main job end to end (tiny profile) and its report, checked in a real browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from residual_train.pipelines.demo import run_demo
from tests.conftest import ROOT, chromium_driver, run_if
from tests.helpers.cli import run_module, succeeded


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The demo as a user starts it (its command line, from another directory)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    r = succeeded(
        run_module(
            "residual_train.pipelines.demo",
            f"out={out}",
            "profile=tiny",
            cwd=out.parent,
            timeout=600,
        )
    )
    assert "Traceback" not in r.stderr
    path = Path(json.loads(r.stdout.strip().splitlines()[-1]))
    assert path == out / "report" / "index.html" and path.is_file()
    return path


@pytest.mark.slow
def test_demo_runs_every_stage_and_publishes(report):
    out = report.parent.parent
    assert (out / "data" / "manifest.json").is_file()
    assert (out / "train" / "checkpoints" / "last.ckpt").is_file()
    index = json.loads((out / "registry" / "demo" / "index.json").read_text())
    assert index["aliases"]["latest"] in index["versions"]
    data = json.loads((report.parent / "report.json").read_text())
    assert set(data["info"]["timings_s"]) == {
        "generate data",
        "train",
        "export + publish",
        "evaluate",
        "report",
    }
    evals = data["evaluations"]
    assert set(evals) == {"quick model (this run)", "shipped default model"}
    for res in evals.values():
        assert res["images"], "no real photographs were evaluated"
        for row in res["per_iso"]:
            for key in ("psnr_input", "psnr_model", "psnr_wiener_wavelet", "psnr_bm3d_wiener"):
                assert 10 < row[key] < 80, (key, row[key])
            assert -1 <= row["noise_corr"] <= 1
            assert any(b["enough"] for b in row["noise_kept"])


@pytest.mark.slow
def test_demo_rerun_reuses_the_finished_work(report, capsys):
    out = report.parent.parent
    before = (out / "train" / "result.json").read_text()
    run_demo(out, "tiny")
    assert "reusing the finished training run" in capsys.readouterr().out
    assert (out / "train" / "result.json").read_text() == before
    assert len(json.loads((out / "registry" / "demo" / "index.json").read_text())["versions"]) == 1


@run_if(chromium=True)
def test_report_renders_in_headless_chromium_with_images_and_tables(report):
    driver = chromium_driver()

    def visit(url: str) -> tuple[list, list, list]:
        driver.get(url)
        driver.execute_async_script(
            "const done = arguments[0];"
            "Promise.all([...document.images].map(i => i.complete ? 1 :"
            " new Promise(r => { i.onload = i.onerror = r; }))).then(() => done());"
        )
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth]);"
        )
        tables = driver.execute_script(
            "return [...document.querySelectorAll('table')].map(t => t.querySelectorAll('td').length);"
        )
        links = driver.execute_script(
            "return [...document.querySelectorAll('a')].map(a => a.href)"
            ".filter(h => h.endsWith('.html'));"
        )
        return images, tables, links

    try:
        images, tables, links = visit(report.as_uri())
        title = driver.title
        pages = [visit(link) for link in links]
    finally:
        driver.quit()
    assert title == "residual-train demo"
    # curves, one noise-kept plot per evaluated model, the 3x3 strengths grid, the PSF atlas
    assert len(images) >= 1 + 2 + 9 + 1
    broken = [src for src, w in images if not w]
    assert not broken, f"images that did not load: {broken}"
    assert len(tables) >= 5 and all(n > 0 for n in tables)
    # each model's full evaluation page is linked and renders its own plots and tables
    assert len(pages) == 2
    for page_images, page_tables, _ in pages:
        assert page_images and all(w for _, w in page_images)
        assert page_tables and all(n > 0 for n in page_tables)


def demo_cli(tmp_path: Path, profile: str) -> Path:
    """``python -m residual_train.pipelines.demo out=TMP/out profile=...``, which must succeed;
    returns its out folder."""
    out = tmp_path / "out"
    succeeded(
        run_module(
            "residual_train.pipelines.demo",
            f"out={out}",
            f"profile={profile}",
            cwd=tmp_path,
            timeout=600,
        )
    )
    return out


@pytest.mark.slow
def test_components_demo_shows_each_residual_and_a_strengths_grid(tmp_path):
    """``profile=components`` (its tiny twin): relight + fog + blur + noise, four heads,
    evaluated on a real photograph with a real depth map."""
    out = demo_cli(tmp_path, "components_tiny")
    report = out / "report"
    data = json.loads((report / "report.json").read_text())
    comps = ["relight", "fog", "blur", "noise"]
    assert [row["component"] for row in data["photograph"]] == [*comps, "all (vs clean)"]
    assert [row["component"] for row in data["validation"]] == [*comps, "full"]
    for row in data["photograph"]:
        assert 10 < row["psnr_input"] < 80 and 10 < row["psnr_model"] < 80, row
    assert 0.02 <= data["params"]["fog_beta"] <= 0.1
    page = (report / "index.html").read_text()
    for c in comps:  # each residual map, true and predicted
        assert f'src="R_{c}.png"' in page and (report / f"R_{c}_true.png").is_file()
    grid = sorted(p.name for p in report.glob("grid_*.png"))
    assert len(grid) == 18 and {"grid_relight0_noise0.png", "grid_fog0_blur1.png"} <= set(grid)
    card = json.loads(next((out / "registry" / "components").glob("*/card.json")).read_text())
    assert card["components"] == comps


@pytest.mark.slow
def test_components_demo_evaluates_the_shipped_components_model(tmp_path):
    """``profile=components`` (its tiny twin): the shipped model, no training; its evaluation
    with the classical baselines is linked from the report with the strengths grids."""
    out = demo_cli(tmp_path, "components_shipped_tiny")
    assert not (out / "train").exists()  # nothing trained
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    card = json.loads(
        next((ROOT / "residual_train" / "weights" / "components").glob("*/card.json")).read_text()
    )
    assert metrics["model"]["components"] == card["components"]
    assert metrics["images"] == ["motorcycle"] and metrics["isos"] == [400.0]
    rows = {r["component"]: r for r in metrics["per_iso"] if "bins" not in r}
    for c in card["components"]:  # every head next to its classical baselines
        assert rows[c]["images"] == 1 and any(
            k.startswith("psnr_") for k in set(rows[c]) - {"psnr_input", "psnr_model"}
        ), rows[c]
    page = (out / "report" / "index.html").read_text()
    assert 'href="../eval/index.html"' in page
    grid = sorted(p.name for p in (out / "report").glob("grid_*.png"))
    assert len(grid) == 18 and {"grid_fog0_blur1.png", "grid_fog1_noise0.5.png"} <= set(grid)
