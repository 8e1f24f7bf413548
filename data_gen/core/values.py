"""Typed config values: each helper returns the value as its type, or raises
:class:`~data_gen.core.errors.InputError` in one line naming the key, the value and what the
key takes (``data.batch_size = 'abc': an integer >= 1``).

Hydra leaves a value it cannot type as a string (``seed=abc``), and YAML's ``true`` is
Python's ``True``, which is also an ``int``: these helpers never take a string for a
number, nor a boolean for a number or a number for a boolean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from data_gen.core.errors import InputError

__all__ = ["boolean", "integer", "mapping", "number", "numbers", "one_of", "optional"]


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" from {lo:g} to {hi:g}"
    if lo is not None:
        return f" >= {lo:g}"
    if hi is not None:
        return f" <= {hi:g}"
    return ""


def integer(value, key: str, lo: int | None = None, hi: int | None = None) -> int:
    """An ``int`` (an integral float such as ``4.0`` too) within ``[lo, hi]``."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    ok = ok and (lo is None or value >= lo) and (hi is None or value <= hi)
    if not ok:
        raise InputError(f"{key} = {value!r}: an integer{_range(lo, hi)}")
    return int(value)


def number(
    value,
    key: str,
    lo: float | None = None,
    hi: float | None = None,
    positive: bool = False,
) -> float:
    """A finite ``int`` or ``float`` within ``[lo, hi]`` (``positive``: also > 0)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    ok = ok and (lo is None or value >= lo) and (hi is None or value <= hi)
    ok = ok and (not positive or value > 0)
    if not ok:
        what = "a number > 0" if positive else "a number"
        raise InputError(f"{key} = {value!r}: {what}{_range(lo, hi)}")
    return float(value)


def numbers(value, key: str, length: int | None = None, **limits) -> list[float]:
    """A list of :func:`number` (``length`` of them when given)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        n = f"{length} " if length else ""
        raise InputError(f"{key} = {value!r}: a list of {n}numbers")
    if length is not None and len(value) != length:
        raise InputError(f"{key} = {list(value)!r}: a list of {length} numbers")
    return [number(v, f"{key}[{i}]", **limits) for i, v in enumerate(value)]


def boolean(value, key: str) -> bool:
    """``true`` or ``false`` (never a string, a number or null)."""
    if not isinstance(value, bool):
        raise InputError(f"{key} = {value!r}: true or false")
    return value


def one_of(value, key: str, options: Sequence) -> object:
    """One of ``options`` (compared as they are: ``'1'`` is not ``1``; named as a config
    writes them: ``true``, ``false``, ``null``)."""
    ok = value in options and (not isinstance(value, bool) or any(o is value for o in options))
    if not ok:
        shown = ("null" if o is None else str(o).lower() if isinstance(o, bool) else str(o)
                 for o in options)  # fmt: skip
        raise InputError(f"{key} = {value!r}: one of {', '.join(shown)}")
    return value


def mapping(value, key: str, known: Sequence[str] | None = None) -> dict:
    """A mapping (null: empty) whose keys are all in ``known`` when given."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{key} = {value!r}: a mapping of settings ({{name: value, ...}})")
    if known is not None:
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise InputError(
                f"{key}.{unknown[0]}: not a setting here ({key} takes {', '.join(known)})"
            )
    return dict(value)


def optional(check, value, key: str, *args, **kw):
    """``None`` as it is, anything else through ``check(value, key, ...)``."""
    return None if value is None else check(value, key, *args, **kw)
