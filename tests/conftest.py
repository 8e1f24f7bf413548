"""Shared fixtures: real configs composed from conf/, tiny sizes, the shared data folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.helpers.cli import ROOT

CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"

# Small but real: 16 px patches, a 7 px PSF, 64 px dead-leaves frames.
TINY = [
    "progress=false",
    "shards=3",
    "samples_per_shard=12",
    "patch_size=16",
    "patches_per_source=5",
    "batch_size=5",
    "lens.size=7",
]
TINY_DEAD_LEAVES = ["source.size=64", "source.supersample=2"]


def compose_cfg(*overrides: str, tiny: bool = True) -> dict:
    """The data_gen config exactly as the CLI would resolve it, as a plain dict."""
    extra = []
    if tiny:
        extra = list(TINY)
        if not any(o.startswith("source=") for o in overrides):
            extra += TINY_DEAD_LEAVES
        if any(o.startswith("lens=") and o != "lens=soft_prime" for o in overrides):
            extra.remove("lens.size=7")
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("data_gen", overrides=[*extra, *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test naming what is missing."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (../shared/data is only in the project's own checkouts)")
    return p


def run_if(
    *, gpu: bool = False, chromium: bool = False, shared_data: bool = False, module: str = ""
) -> pytest.MarkDecorator:
    """``@run_if(...)``: skip unless every named requirement holds, saying which is missing
    (cf. lightning-hydra-template's ``RunIf``). Slurm needs a running cluster: use the
    ``slurm_cluster`` fixture instead."""
    import importlib.util
    import shutil

    why = []
    if gpu:
        import torch

        if not torch.cuda.is_available():
            why.append("a CUDA GPU")
    if chromium and not (
        (shutil.which("chromium") or shutil.which("chromium-browser"))
        and shutil.which("chromedriver")
    ):
        why.append("Debian's chromium and chromium-driver (.ci/run installs them)")
    if shared_data and not SHARED_DATA.is_dir():
        why.append(f"{SHARED_DATA} (only in the project's own checkouts)")
    if module and importlib.util.find_spec(module) is None:
        why.append(f"the Python package {module!r}")
    return pytest.mark.skipif(bool(why), reason="needs " + "; ".join(why))


def chromium_driver():
    """Headless Debian Chromium through selenium, with the flags a closed network needs."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
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
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def tree_digest(d: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``d`` (empty when ``d`` is absent)."""
    if not d.exists():
        return {}
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def pytest_configure(config) -> None:
    # PSF banks of lens descriptions are cached; keep the tests' out of the user's home
    os.environ.setdefault("RESIDUAL_TRAIN_CACHE", tempfile.mkdtemp(prefix="rt-test-cache-"))
    # pytest-xdist runs one process per core: one torch thread each avoids oversubscription
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> dict[str, Path]:
    """A tiny blur + noise dataset (``ds``), a one-epoch training run on it (``run``), the
    run's export (``exp``) and an 8-bit PNG to deploy on (``png``): made once per test
    worker and shared by every module that needs a trained and exported model. Read-only:
    a test that changes one copies it first."""
    import numpy as np
    from PIL import Image

    from data_gen.generate import generate
    from residual_train.release.export import export
    from residual_train.training.train import train
    from tests.helpers.training import train_cfg

    root = tmp_path_factory.mktemp("trained")
    ds, run = root / "ds", root / "run"
    generate(compose_cfg(f"out_dir={ds}", "patch_size=24", "source.size=96"))
    train(
        train_cfg(f"data.dir={ds}", f"run_dir={run}", "trainer.max_epochs=1", "val.panel_every=0")
    )
    export(run / "checkpoints" / "last.ckpt", root / "exp")
    Image.fromarray(np.full((32, 40, 3), 90, np.uint8)).save(root / "x.png")
    return {"ds": ds, "run": run, "exp": root / "exp", "png": root / "x.png"}


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """SLURM_CONF of the cluster started by ``scripts/local_slurm.sh start`` (.ci/run does),
    or skip naming why there is none."""
    import shutil
    import subprocess

    d = Path(os.environ.get("LOCAL_SLURM_DIR", "/tmp/residual-train-slurm"))
    if shutil.which("sbatch") is None:
        pytest.skip("no Slurm: sbatch is not installed (scripts/local_slurm.sh start installs one)")
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "local_slurm.sh"), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        why = (d / "failed").read_text().strip() if (d / "failed").is_file() else r.stdout.strip()
        pytest.skip(
            f"no local Slurm cluster answers ({why}); start one: scripts/local_slurm.sh start"
        )
    conf = str(d / "slurm.conf")
    os.environ["SLURM_CONF"] = conf  # inherited by sbatch and by the jobs
    return conf


def pytest_collection_modifyitems(config, items) -> None:
    """The Slurm tests first, then the modules holding slow tests (stable order otherwise).
    ``make test`` hands whole modules to the workers in this order (``--dist loadscope
    --no-loadscope-reorder``): the Slurm module mostly waits on the cluster, so one worker
    runs it while the others take the rest, and the long modules start early instead of
    one of them running alone at the end."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(
        key=lambda item: (
            0 if item.get_closest_marker("slurm") else (1 if item.module.__name__ in slow else 2)
        )
    )
