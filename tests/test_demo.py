"""The main job end to end (tiny profile) and its report, checked in a real browser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from residual_train.pipelines.demo import run_demo
from tests.conftest import chromium_driver, run_if


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The demo as a user starts it (its command line, from another directory)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    r = subprocess.run(
        [sys.executable, "-m", "residual_train.pipelines.demo", f"out={out}", "profile=tiny"],
        capture_output=True,
        text=True,
        cwd=out.parent,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    path = Path(json.loads(r.stdout.strip().splitlines()[-1]))
    assert path == out / "report" / "index.html" and path.is_file()
    return path


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
