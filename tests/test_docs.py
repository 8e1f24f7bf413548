"""The documentation cannot drift from the code: the site builds with ``mkdocs build
--strict`` (a broken link, a page left out of the nav or a docstring griffe cannot read
fails), the README stays a README, and every command the README and the docs show is
checked against the code without running it: ``python -m MODULE ...`` and
``residual-train STAGE ...`` name a module that exists, and their ``key=value`` overrides
compose against the command's config tree and pass the command's own value checks
(:func:`data_gen.core.cli.check_value_types`), as its command line would. ``make TARGET`` names
a Makefile target; ``python FILE.py``, ``bash FILE.sh`` and ``slurm/...`` name files that
exist. The one-page block of docs/your-camera.md is also *run*, at tiny sizes, by
tests/test_your_camera.py."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CONF, ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

# The pages whose fenced shell blocks are checked: the README and every page under docs/
# (the API reference is generated from the docstrings: no commands).
PAGES = [README, *sorted(p for p in DOCS.rglob("*.md") if "reference" not in p.parts)]

APPS = CONF / "apps"
# module -> (config tree, config name, the bare words its run_app names, in order)
HYDRA_APPS: dict[str, tuple[Path, str, dict[str, str]]] = {
    "data_gen": (CONF, "data_gen", {}),
    "data_gen.verify": (CONF, "verify", {"dir": "*"}),
    "data_gen.preview": (CONF, "preview", {"dir": "*"}),
    "data_gen.optics": (CONF, "optics", {"command": "bank|atlas"}),
    "residual_train": (CONF, "train", {}),
    "residual_train.release.export": (APPS, "export", {}),
    "residual_train.release.publish": (APPS, "publish", {"action": "list|alias|publish"}),
    "residual_train.deploy": (APPS, "deploy", {}),
    "residual_train.deploy.recompose": (APPS, "recompose", {}),
    "residual_train.evaluate": (APPS, "evaluate", {}),
    "residual_train.serve": (
        APPS,
        "serve",
        {"command": "keys|run", "action": "add|revoke|list", "user": "*"},
    ),
    "residual_train.release.fetch": (APPS, "fetch", {}),
    "residual_train.pipelines.demo": (APPS, "demo", {}),
}
CALIBRATE = "data_gen.calibrate"  # its first word picks conf/calibrate_<word>.yaml
# Slurm templates that pass their arguments on to a stage ("$@"), and slurm/pipeline.sh's
# variables of overrides
SCRIPT_APPS = {"slurm/submit_datagen.sh": "data_gen", "slurm/train.sbatch": "residual_train"}
OVERRIDE_VARS = {"DATA_OVERRIDES": "data_gen", "TRAIN_OVERRIDES": "residual_train"}

# a value written for the reader to fill in: DIR, FILE, N, REF, ..., $VAR, <...>
PLACEHOLDER = re.compile(
    r"\$|\.\.\.|<[^>]*>|\b(?:DIR|FILE|FILES|N|REF|NAME|KEY|ID|USER|OUT|VALUE|K1|K2)\b"
)
PYTHON = re.compile(r"^(?:\S*/)?python(?:3(?:\.\d+)?)?$")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
SHELL_LANGS = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Command:
    page: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def shell_commands(page: Path) -> list[Command]:
    """Each command of the page's fenced shell blocks (continuations joined, comments
    and prompts dropped), with the line it starts on."""
    out: list[Command] = []
    lines = page.read_text().splitlines()
    fence = None
    pending, start = "", 0
    for i, ln in enumerate(lines, 1):
        s = ln.strip()
        if s.startswith("```"):
            if fence is None:
                fence = s[3:].strip().split(" ")[0].lower()
            else:
                fence = None
            continue
        if fence not in SHELL_LANGS:
            continue
        if not pending:
            start = i
            s = s.removeprefix("$ ")
        if s.endswith("\\"):
            pending += s[:-1] + " "
            continue
        text = (pending + s).strip()
        pending = ""
        if text and not text.startswith("#"):
            out.append(Command(page, start, text))
    return out


COMMANDS = [c for p in PAGES for c in shell_commands(p)]


def module_and_args(words: list[str]) -> tuple[str, list[str]] | None:
    """``python -m MOD ARGS`` or ``residual-train STAGE ARGS`` -> (MOD, ARGS); else None."""
    from residual_train.cli import STAGES

    if len(words) >= 3 and PYTHON.match(words[0]) and words[1] == "-m":
        return words[2], words[3:]
    if words and words[0] == "residual-train":
        if len(words) < 2 or words[1] not in STAGES:
            raise AssertionError(f"residual-train: unknown stage {words[1:2]}; stages: {STAGES}")
        return STAGES[words[1]], words[2:]
    return None


def neutral(override: str) -> tuple[str | None, str | None]:
    """``key=value`` with a placeholder value -> ``key=null`` (the key is still checked);
    a placeholder in the key itself -> None. Returns (override, the placeholder text)."""
    key, eq, value = override.partition("=")
    if PLACEHOLDER.search(key):
        return None, override
    if eq and PLACEHOLDER.search(value):
        return f"{key}=null", override
    return override, None


def compose_errors(module: str, args: list[str], monkeypatch) -> tuple[list[str], list[str]]:
    """What the command line would refuse before running: ([errors], [placeholders]).
    Nothing is run and nothing is written."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    import data_gen.core.cli as cli

    if any(a in ("-h", "--help") for a in args):
        return [], []
    if module == CALIBRATE:
        if not args or args[0] not in ("noise", "lens"):
            return [f"calibrate: the first word must be noise or lens, not {args[:1]}"], []
        root, name, words = CONF, f"calibrate_{args[0]}", {}
        args = args[1:]
    elif module in HYDRA_APPS:
        root, name, words = HYDRA_APPS[module]
    else:
        return [], []  # importable, and not a Hydra command
    multirun = any(a in ("-m", "--multirun") for a in args)
    flags = [a for a in args if a.startswith("-") and a not in ("-m", "--multirun")]
    if flags:
        return [f"flags this check does not know: {flags}"], []
    args = cli.quote_range_overrides(
        cli.named_words([a for a in args if not a.startswith("-")], words)
    )
    overrides, placeholders = [], []
    groups = {p.name for p in root.iterdir() if p.is_dir()}
    for a in args:
        m = cli._GROUP_FILE.match(a)
        if m and m.group(1) in groups:  # GROUP=FILE.yaml: a file an earlier command wrote
            placeholders.append(a)
            continue
        o, ph = neutral(a)
        if ph:
            placeholders.append(ph)
        if o is not None:
            overrides.append(o)
    try:  # Hydra's grammar: e.g. an unquoted `~` is refused (the shell leaves it in `a.b=~/x`)
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:
        return [f"{type(e).__name__}: {' '.join(str(e).split())}"], placeholders
    if multirun:  # a sweep composes as its first point
        overrides = [
            f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
            if o.is_sweep_override()
            else text
            for text, o in zip(overrides, parsed, strict=True)
        ]
        parsed = OverridesParser.create().parse_overrides(overrides)
    try:
        cfg = cli.compose_config(root, name, overrides)
    except Exception as e:  # Hydra's ConfigCompositionException, OmegaConf's errors
        return [f"{type(e).__name__}: {' '.join(str(e).split())}"], placeholders
    # the command's own checks of the values given (types; `+key` only where read)
    chosen, changed, added = [], [], []
    for text, o in zip(overrides, parsed, strict=True):
        base_name = o.key_or_group.split("@")[0]
        if text.startswith("hydra") or base_name.startswith("hydra"):
            continue
        if (root / base_name).is_dir():
            chosen.append(text)
        elif o.type in (OverrideType.CHANGE, OverrideType.FORCE_ADD):
            changed.append(o.key_or_group)
        elif o.type == OverrideType.ADD:
            added.append(o.key_or_group)
    monkeypatch.setattr(cli, "command_line_values", lambda _d: (chosen, changed, added))
    try:
        cli.check_value_types(root, name, cfg)
    except Exception as e:  # data_gen.core.errors.InputError
        return [f"{type(e).__name__}: {e}"], placeholders
    return [], placeholders


def check(cmd: Command, monkeypatch) -> list[str]:
    """Everything wrong with one documented command (empty: it would start)."""
    try:
        words = shlex.split(cmd.text, comments=True)
    except ValueError as e:
        return [f"not a shell command ({e})"]
    if words and words[0] in ("export", "sudo"):
        words = words[1:]
    env = {}
    while words and ASSIGNMENT.match(words[0]):  # VAR=value command ...
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if not words:
        return []
    if words[0] == "slurm/pipeline.sh":
        for var, module in OVERRIDE_VARS.items():
            if var in env:
                errors = compose_errors(module, shlex.split(env[var]), monkeypatch)[0]
                if errors:
                    return [f"{var}: {e}" for e in errors]
    if words[0] == "sbatch":  # sbatch [options] TEMPLATE [the stage's overrides]
        i = next((i for i, w in enumerate(words) if w.endswith((".sbatch", ".sh"))), None)
        if i is None:
            return ["sbatch without a template"]
        words = words[i:]
        if not (ROOT / words[0]).is_file():
            return [f"no file {words[0]!r}"]
    if words[0] in SCRIPT_APPS and (ROOT / words[0]).is_file():
        return compose_errors(SCRIPT_APPS[words[0]], words[1:], monkeypatch)[0]
    try:
        found = module_and_args(words)
    except AssertionError as e:
        return [str(e)]
    if found is not None:
        module, args = found
        if importlib.util.find_spec(module) is None:
            return [f"no module {module!r}"]
        return compose_errors(module, args, monkeypatch)[0]
    if words[0] == "make":
        targets = {
            m.group(1) for m in re.finditer(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), re.M)
        }
        wanted = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        return [f"no Makefile target {t!r}" for t in wanted if t not in targets]
    script = None
    if PYTHON.match(words[0]) or words[0] in ("bash", "sh"):
        script = next((w for w in words[1:] if not w.startswith("-")), None)
    elif "/" in words[0] and not words[0].startswith(("/", "~", "$")):
        script = words[0]
    if script and not script.startswith(("/", "~", "$")) and not (ROOT / script).is_file():
        return [f"no file {script!r}"]
    return []


def _mkdocs_missing() -> str:
    missing = [m for m in ("mkdocs", "material", "mkdocstrings_handlers.python") if not _has(m)]
    return ", ".join(missing)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_the_site_builds_strict(tmp_path):
    missing = _mkdocs_missing()
    if missing:
        pytest.skip(f"needs {missing} (pip install -e '.[test]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout[-4000:]}{r.stderr[-4000:]}"
    assert (site / "index.html").is_file()
    assert (site / "reference" / "deploy" / "index.html").is_file()


def test_every_docs_page_is_in_the_nav():
    """mkdocs only warns (and --strict fails) for pages it finds; say which one is left
    out, and that the nav names no page that is gone."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may hold !!python/name tags (pymdownx options): read them as strings
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)["nav"]

    def pages(item) -> list[str]:
        if isinstance(item, str):
            return [item]
        if isinstance(item, list):
            return [p for i in item for p in pages(i)]
        if isinstance(item, dict):
            return [p for v in item.values() for p in pages(v)]
        return []

    named = set(pages(nav))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk - named == set(), "pages missing from mkdocs.yml's nav"
    assert named - on_disk == set(), "mkdocs.yml's nav names pages that do not exist"


def test_the_readme_is_a_readme():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail to docs/"
    )
    # .ci/run calls the README's test command
    ci = (ROOT / ".ci" / "run").read_text()
    readme_cmds = {c.text.split("#")[0].strip() for c in shell_commands(README)}
    assert "make test" in readme_cmds and re.search(r"^make test$", ci, re.M)


def test_the_docs_show_commands():
    """The scan below found what it should (a parser that finds nothing checks nothing)."""
    modules = {
        found[0]
        for c in COMMANDS
        if (found := module_and_args(shlex.split(c.text, comments=True))) is not None
    }
    assert {"data_gen", "residual_train", "residual_train.deploy"} <= modules
    assert len(COMMANDS) > 50


def test_the_app_table_matches_the_code():
    """HYDRA_APPS names each stage's module, its config and its bare words as the module
    itself does (a new stage, a renamed config or new bare words show up here)."""
    from residual_train.cli import STAGES

    assert set(STAGES.values()) == {*HYDRA_APPS, CALIBRATE}
    for module, (root, name, words) in HYDRA_APPS.items():
        assert (root / f"{name}.yaml").is_file(), (module, name)
        spec = importlib.util.find_spec(module)
        src = Path(spec.origin)
        main = src.parent / "__main__.py" if src.name == "__init__.py" else src
        text = main.read_text()
        assert f'"{name}"' in text, f"{main} does not name the config {name!r}"
        for key, allowed in words.items():
            assert f'"{key}": "{allowed}"' in text, f"{main}: words {key!r}: {allowed!r}"
    for what in ("noise", "lens"):
        assert (CONF / f"calibrate_{what}.yaml").is_file()


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.where for c in COMMANDS])
def test_a_documented_command_matches_the_code(cmd: Command, monkeypatch):
    problems = check(cmd, monkeypatch)
    assert not problems, f"{cmd.where}: {cmd.text}\n  " + "\n  ".join(problems)


@pytest.mark.parametrize(
    "text, why",
    [
        ("python -m data_gn out_dir=x", "no module"),
        ("python -m data_gen out_dir=x shard=8", "shard"),
        ("python -m residual_train data.dir=x model.widht=8", "widht"),
        ("python -m residual_train data.dir=x data.onthefly.enabled=maybe", "maybe"),
        ("python -m residual_train data.dir=x +trainer_x=1", "trainer_x"),
        ("residual-train deploi model=default", "unknown stage"),
        ("python -m residual_train.serve keys add alice storrage=/srv", "storrage"),
        ("python -m data_gen source=folder source.path=~/photos", "LexerNoViableAlt"),
        ("sbatch slurm/train.sbatch data.dir=x optim.lrr=1", "lrr"),
        ("TRAIN_OVERRIDES='experiment=nope' slurm/pipeline.sh", "TRAIN_OVERRIDES"),
        ("sbatch --time=1 slurm/nothere.sbatch", "no file"),
        ("make tests", "no Makefile target"),
        ("python bench/nothere.py", "no file"),
    ],
)
def test_the_check_catches_drift(text, why, monkeypatch):
    problems = check(Command(README, 0, text), monkeypatch)
    assert problems and why in " ".join(problems), problems


def test_placeholders_keep_their_key_checked(monkeypatch):
    errors, placeholders = compose_errors(
        "residual_train.release.export", ["ckpt=...", "out_dir=DIR"], monkeypatch
    )
    assert errors == [] and placeholders == ["ckpt=...", "out_dir=DIR"]
    errors, _ = compose_errors("residual_train.release.export", ["ckpt_typo=..."], monkeypatch)
    assert errors
