"""The main job end to end (tiny profile) and its report, checked in a real browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from residual_train.demo import run_demo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return run_demo(tmp_path_factory.mktemp("demo") / "out", "tiny")


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
    rows = data["rows"]
    assert rows and all(r["psnr_input"] > 0 and r["psnr_baseline"] > 0 for r in rows)
    assert len(data["noise"]) >= 5


def test_demo_rerun_reuses_the_finished_work(report, capsys):
    out = report.parent.parent
    before = (out / "train" / "result.json").read_text()
    run_demo(out, "tiny")
    assert "reusing the finished training run" in capsys.readouterr().out
    assert (out / "train" / "result.json").read_text() == before
    assert len(json.loads((out / "registry" / "demo" / "index.json").read_text())["versions"]) == 1


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
def test_report_renders_in_headless_chromium_with_images_and_tables(report):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(report.as_uri())
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
        title = driver.title
    finally:
        driver.quit()
    assert title == "residual-train demo"
    assert len(images) >= 15
    broken = [src for src, w in images if not w]
    assert not broken, f"images that did not load: {broken}"
    assert len(tables) >= 5 and all(n > 0 for n in tables)
