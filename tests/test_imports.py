"""The import rules of pyproject.toml's ``[tool.importlinter]`` (the flow runs one way:
physics and data -> learning -> release -> use), checked with import-linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT, "--config", str(config), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_projects_import_rules_hold():
    r = lint(ROOT / "pyproject.toml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    for rule in (
        "data_gen (physics and data) imports no stage",
        "release (export, quantize, registry, publish, fetch) imports no use stage",
        "no import cycles between sibling modules",
    ):
        assert f"{rule} KEPT" in r.stdout
    assert " 0 broken" in r.stdout


def test_a_rule_the_code_breaks_is_reported_with_the_import(tmp_path):
    """The linter reads the real import graph: deploy does import the physics package."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        "[tool.importlinter]\n"
        'root_packages = ["data_gen", "residual_train"]\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "deploy without physics"\n'
        'type = "forbidden"\n'
        'source_modules = ["residual_train.deploy"]\n'
        'forbidden_modules = ["data_gen"]\n'
    )
    r = lint(rules)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "deploy without physics BROKEN" in r.stdout
    assert "residual_train.deploy" in r.stdout and "data_gen" in r.stdout
