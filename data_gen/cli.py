"""Shared command-line plumbing: Hydra argv fix-ups and clear error reporting."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable

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


def parse_kv(
    argv: list[str],
    defaults: dict[str, str | None],
    positional: int = 0,
    usage: str = "",
    doc: str | None = None,
) -> tuple[list[str], dict[str, str | None]]:
    """``key=value`` command-line arguments (Hydra-like, for the small CLIs).

    Keys must be in ``defaults`` (a ``None`` default marks a required key); ``positional``
    bare arguments are allowed. ``-h``/``--help`` prints ``doc`` (or ``usage``) and exits
    0. Raises :class:`InputError` naming the bad argument.
    """
    if any(a in ("-h", "--help") for a in argv):
        print(doc or usage)
        sys.exit(0)
    opts = dict(defaults)
    pos: list[str] = []
    for a in argv:
        if "=" in a:
            k, v = a.split("=", 1)
            if k not in opts:
                raise InputError(f"unknown option {k!r}; known: {', '.join(opts)}. {usage}")
            opts[k] = v
        else:
            pos.append(a)
    if len(pos) != positional:
        raise InputError(f"expected {positional} positional argument(s), got {pos}. {usage}")
    missing = [k for k, v in opts.items() if v is None]
    if missing:
        raise InputError(f"{', '.join(f'{k}=...' for k in missing)} required. {usage}")
    return pos, opts
