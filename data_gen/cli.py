"""Shared command-line plumbing: Hydra argv fix-ups and clear error reporting."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

from data_gen.errors import InputError

log = logging.getLogger("data_gen")

_RANGE = re.compile(r"^(\+{0,2}[\w.]+)=(range\(.*\))$")


def quote_range_overrides(argv: list[str]) -> list[str]:
    """``key=range(a,b)`` -> ``key='range(a,b)'``: a value, not a Hydra multirun sweep."""
    out = []
    for a in argv:
        m = _RANGE.match(a)
        out.append(f"{m.group(1)}='{m.group(2)}'" if m else a)
    return out


def origin_hint(message: str, config_name: str) -> str:
    """Where the config key an error message starts with came from (CLI or which YAML)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except Exception:  # not under Hydra (library use)
        return ""
    m = re.match(r"^([a-z_][\w]*(?:\.[\w]+)*)", message)
    if m is None:
        return ""
    key = m.group(1)
    for o in hc.overrides.task:
        k = o.split("=", 1)[0].lstrip("+~")
        if key == k or key.startswith(k + ".") or k.startswith(key + "."):
            return f" [set on the command line: {o}]"
    group = key.split(".", 1)[0]
    choice = hc.runtime.choices.get(group)
    if choice is not None and "." in key:
        return f" [from conf/{group}/{choice}.yaml]"
    return f" [from conf/{config_name}.yaml]"


def run_task(fn: Callable[[], object], config_name: str) -> object:
    """Run ``fn``; an :class:`InputError` becomes one line on stderr and exit status 2."""
    try:
        return fn()
    except InputError as e:
        msg = str(e)
        print(f"error: {msg}{origin_hint(msg, config_name)}", file=sys.stderr, flush=True)
        sys.exit(2)


def named_words(argv: list[str], words: dict[str, str]) -> list[str]:
    """Leading bare words as named keys: ``words = {"dir": "*"}`` turns ``DIR`` into
    ``dir=DIR``; ``{"action": "list|alias"}`` turns ``list`` into ``action=list`` (only
    those values). Keeps commands like ``verify DIR`` and ``publish list`` working."""
    out, rest = [], list(argv)
    for key, allowed in words.items():
        if not rest or "=" in rest[0] or rest[0].startswith("-"):
            break
        if allowed != "*" and rest[0] not in allowed.split("|"):
            break
        out.append(f"{key}={rest.pop(0)}")
    return [*out, *rest]


def compose_config(config_dir: str | Path, name: str, overrides: list[str]) -> dict:
    """A config resolved as its command line would resolve it, as a plain dict.

    Works inside a running Hydra app too (the demo composes the generator's and the
    trainer's configs from within its own job): the app's global state is set aside and
    restored afterwards.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf import OmegaConf

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base=None):
            return OmegaConf.to_container(compose(name, overrides=overrides), resolve=True)
    finally:
        restore_gh_from_backup(backup)


def run_app(
    config_path: str | Path,
    config_name: str,
    fn: Callable[[dict], object],
    words: dict[str, str] | None = None,
    flags: dict[str, str] | None = None,
    print_result: bool = True,
) -> None:
    """Run ``fn(resolved config as a plain dict)`` as a Hydra command (the one way every
    entry point is made): argv fix-ups (``key=range(a,b)`` quoted, leading ``words`` named,
    old ``flags`` such as ``--no-checksums`` mapped to overrides), the config tree at
    ``config_path``, :func:`run_task`'s one-line errors, and the result printed as one
    JSON line."""
    import json

    import hydra
    from omegaconf import OmegaConf

    argv = [(flags or {}).get(a, a) for a in sys.argv[1:]]
    # a small command writes nothing of Hydra's own and stays in the working directory
    quiet = ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=stdout"]
    quiet = [q for q in quiet if not any(a.startswith(q.split("=")[0] + "=") for a in argv)]
    sys.argv[1:] = [*quote_range_overrides(named_words(argv, words or {})), *quiet]

    @hydra.main(version_base=None, config_path=str(config_path), config_name=config_name)
    def _main(cfg) -> object:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        where = (
            config_name
            if Path(config_path).name == "conf"
            else f"{Path(config_path).name}/{config_name}"
        )
        result = run_task(lambda: fn(resolved), where)
        if print_result and result is not None:
            print(json.dumps(result, default=str), flush=True)
        return result

    _main()
