"""The package people install: a wheel (not editable) with its configs, console script and
shipped model, working from any directory."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _build_wheel(src: Path, dist: Path) -> Path:
    """``pip wheel`` of the project at ``src`` (no downloads: this environment's setuptools)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    r = _run([*cmd, "-w", str(dist), str(src)], cwd=dist.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    return next(dist.glob("residual_train-*.whl"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with the project's wheel installed (not editable).

    Its dependencies come from this environment through a path entry (so nothing is
    downloaded); the editable checkout is *not* importable from it."""
    root = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(ROOT, root / "dist")
    env = root / "venv"
    venv.create(env, with_pip=False)
    py = env / "bin" / "python"
    site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root)
    (Path(site.stdout.strip()) / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=root,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return env


def test_the_wheel_carries_configs_weights_and_the_console_script(installed, tmp_path):
    py = installed / "bin" / "python"
    r = _run(
        [
            str(py),
            "-c",
            "import json, residual_train, data_gen.core.paths as p\n"
            "from residual_train.deploy import SHIPPED, shipped_models\n"
            "print(json.dumps([residual_train.__file__, str(p.CONF), str(SHIPPED), shipped_models()]))",
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    pkg, conf, shipped, names = json.loads(r.stdout)
    site = str(installed)
    assert pkg.startswith(site) and conf.startswith(site) and shipped.startswith(site)
    assert (Path(conf) / "data_gen.yaml").is_file() and (
        Path(conf) / "apps" / "evaluate.yaml"
    ).is_file()
    assert "default" in names
    assert (installed / "bin" / "residual-train").is_file()
    r = _run([str(installed / "bin" / "residual-train"), "--help"], tmp_path)
    assert r.returncode == 0 and "generate" in r.stdout and "evaluate" in r.stdout
    # the service's page and config travel in the wheel too
    r = _run(
        [str(installed / "bin" / "residual-train"), "serve", "keys", "add", "u", "storage=s"],
        tmp_path,
    )
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith("rt_"), r.stderr
    r = _run(
        [
            str(py),
            "-c",
            "from importlib.resources import files; "
            "print(len((files('residual_train.serve') / 'page.html').read_text()))",
        ],
        tmp_path,
    )
    assert r.returncode == 0 and int(r.stdout) > 1000


@pytest.mark.slow
def test_generate_train_export_deploy_from_another_directory(installed, tmp_path):
    rt = str(installed / "bin" / "residual-train")
    py = str(installed / "bin" / "python")
    steps = [
        [
            rt,
            "generate",
            "out_dir=ds",
            "shards=3",
            "samples_per_shard=8",
            "patch_size=16",
            "source.size=64",
            "lens.size=7",
            "progress=false",
        ],
        [
            rt,
            "train",
            "data.dir=ds",
            "run_dir=run",
            "experiment=tiny",
            "trainer.max_epochs=1",
            "data.crop=16",
            "val.panel_every=0",
        ],
        [
            py,
            "-m",
            "residual_train.release.export",
            "ckpt=run/checkpoints/last.ckpt",
            "out_dir=exp",
        ],
        [rt, "deploy", "model=exp", "input=img.png", "out_dir=out"],
        [rt, "deploy", "model=default", "input=img.png", "out_dir=out_default", "iso=1600"],
        [
            rt,
            "recompose",
            "maps=out_default",
            "strengths.blur=0.5",
            "strengths.noise=0",
            "out=half.tif",
        ],
    ]
    img = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "img.png")
    for cmd in steps:
        r = _run(cmd, tmp_path)
        assert r.returncode == 0, (cmd, r.stderr[-3000:])
    assert (tmp_path / "ds" / "manifest.json").is_file()
    assert (tmp_path / "exp" / "model.onnx").is_file()
    assert (tmp_path / "out_default" / "R_noise.tif").is_file()
    assert (tmp_path / "half.tif").is_file()
    # nothing was written into the installed package or the checkout
    assert not (installed / "runs").exists() and not (tmp_path / "outputs").exists()


def test_the_sdist_builds_a_wheel_with_configs_docs_and_weights(tmp_path):
    """What a distribution packager does: sdist, unpack, build the wheel from it alone."""
    import tarfile
    import zipfile

    r = _run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))",
            str(tmp_path / "sdist"),
        ],
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sdist = tmp_path / "sdist" / r.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
        tf.extractall(tmp_path / "src", filter="data")
    for must in ("conf/train.yaml", "conf/apps/serve.yaml", "docs/design.md", "setup.py"):
        assert must in names, must
    assert any(n.startswith("residual_train/weights/default/") for n in names)
    top = next((tmp_path / "src").iterdir())
    wheel = _build_wheel(top, tmp_path / "dist")
    inside = set(zipfile.ZipFile(wheel).namelist())
    for must in (
        "data_gen/conf/train.yaml",
        "data_gen/conf/apps/serve.yaml",
        "residual_train/serve/page.html",
        "residual_train/weights/default/index.json",
    ):
        assert must in inside, must
