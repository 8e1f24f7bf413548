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


ENV_NAMES = (
    "RESIDUAL_TRAIN_DEBUG",
    "RESIDUAL_TRAIN_CACHE",
    "RESIDUAL_TRAIN_KEY",
    "LOCAL_RANK",
    "WANDB_MODE",
    "WANDB_API_KEY",
)


def test_the_environment_is_read_in_one_place(monkeypatch, tmp_path):
    """The variables the project reads are data_gen.core.environment's typed record (read afresh
    on every call); no other module reads them from os.environ (two modules computed the
    cache folder, two the debug switch, before)."""
    import re

    from data_gen.core.environment import environment

    names = "|".join(ENV_NAMES)
    read = rf"(os\.environ\.get|os\.getenv)\(\s*.({names})|os\.environ\[.({names}).\](?!\s*=)"
    hits = []
    for p in sorted([*ROOT.glob("data_gen/**/*.py"), *ROOT.glob("residual_train/**/*.py")]):
        if p.relative_to(ROOT).as_posix() == "data_gen/core/environment.py":
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(read, line):
                hits.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, hits

    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    env = environment()
    assert env.cache_root == tmp_path / ".cache" / "residual-train"
    assert not env.debug and env.first_local_rank and env.registry_key is None
    assert not env.wandb_offline
    monkeypatch.setenv("RESIDUAL_TRAIN_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("RESIDUAL_TRAIN_DEBUG", "1")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("WANDB_MODE", "offline")
    env = environment()
    assert env.cache_root == tmp_path / "c" and env.debug and not env.first_local_rank
    assert env.wandb_offline
    from data_gen.core.paths import bank_cache_dir

    assert bank_cache_dir() == tmp_path / "c" / "banks"


def test_the_shared_plumbing_imports_nothing_else_of_the_project():
    """data_gen.core (errors, CLI wrapper, paths, values, typed settings, environment,
    registries, HTML) is the base every module builds on: it imports no physics, data or
    stage module, at the top of a file or inside a function."""
    import ast

    bad = []
    for p in sorted((ROOT / "data_gen" / "core").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                root = n.split(".")[0]
                if root == "residual_train" or (
                    root == "data_gen" and not n.startswith("data_gen.core")
                ):
                    bad.append(f"{p.relative_to(ROOT)}:{node.lineno}: {n}")
    assert not bad, bad


def test_no_function_of_the_packages_runs_over_80_lines():
    """A function that does one job fits on a screen: none in data_gen, residual_train or
    scripts runs over 80 lines (bench/ is exempt: a benchmark is one long measurement)."""
    import ast

    long = []
    for top in ("data_gen", "residual_train", "scripts"):
        for p in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > 80:
                        long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
