"""Checked settings for the learning stages (data, training): pydantic models whose values
are checked with :mod:`data_gen.core.values`' wording (``an integer >= 1``, ``one of l1, l2``),
:func:`parse` (:func:`data_gen.core.typed.parse`, the one parser of every settings group)
raising the first problem as one line naming the key and its value, the YAML's defaults
filling a partial mapping (:func:`completed`), and :func:`build` for a group's ``_target_``. The groups themselves: :mod:`residual_train.data_settings` (``data``)
and :mod:`residual_train.training.settings` (the rest of the training config).

The defaults live in one place, the YAML (``conf/train.yaml``, ``conf/data/default.yaml``):
a full config is checked as it is; a partial mapping given to the library (the data
module's keyword arguments, a checkpoint's hyper-parameters from before a setting existed)
is completed from the YAML first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator, Field

from data_gen.core.errors import InputError
from data_gen.core.paths import CONF
from data_gen.core.typed import parse  # noqa: F401 (the one settings parser, re-exported)
from data_gen.core.values import boolean, integer, number, one_of

_KEY = "\x00"  # stands for the key in a value check's message; the key is named by parse


def checked(check: Callable, *args, **kw) -> BeforeValidator:
    """A pydantic check by one of :mod:`data_gen.core.values`' helpers (their wording: ``an
    integer >= 1``, ``one of l1, l2, charbonnier``); ``None`` passes when it is allowed."""
    none_ok = kw.pop("none_ok", False)

    def run(value):
        if value is None and none_ok:
            return None
        try:
            return check(value, _KEY, *args, **kw)
        except InputError as e:
            text = str(e)
            what = text.removeprefix(f"{_KEY} = {value!r}: ")
            raise ValueError(what if what != text else text.partition(": ")[2]) from None

    return BeforeValidator(run)


def Int(lo: int | None = None, none_ok: bool = False) -> Any:
    return Annotated[int | None if none_ok else int, checked(integer, lo, none_ok=none_ok)]


def Num(lo: float | None = None, hi: float | None = None, positive: bool = False) -> Any:
    return Annotated[float, checked(number, lo, hi, positive=positive)]


def OneOf(*options) -> Any:
    return Annotated[Any, checked(one_of, options)]


Bool = Annotated[bool, checked(boolean)]
Target = Annotated[str, Field(alias="_target_")]  # a callable's dotted path (Hydra)
Partial = Annotated[bool, Field(alias="_partial_")]


def string_list(what: str) -> BeforeValidator:
    def run(value):
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(what)
        return value

    return BeforeValidator(run)


@functools.cache
def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def defaults(group: str) -> dict:
    """The YAML's defaults of ``group`` (``loss``, ``optim``, ``val``, ``perf`` from
    ``conf/train.yaml``; ``data`` from ``conf/data/default.yaml``)."""
    if group == "data":
        return dict(_yaml(CONF / "data" / "default.yaml"))
    return dict(_yaml(CONF / "train.yaml")[group])


def completed(group: str, given: Mapping | None) -> dict:
    """``given`` over the YAML's defaults of ``group`` (one level deep, and one more for
    ``data.onthefly``): a partial mapping from library callers or older checkpoints."""
    out = {**defaults(group), **(given or {})}
    if group == "data" and (out["onthefly"] is None or isinstance(out["onthefly"], Mapping)):
        out["onthefly"] = {**defaults(group)["onthefly"], **(out["onthefly"] or {})}
    return out


def build(node: dict, what: str, **kw):
    """``node``'s ``_target_`` instantiated (Hydra) with ``kw``; the target's own
    :class:`InputError` as it is (Hydra wraps it), any other failure one line naming
    ``what``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kw, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, InputError):
            raise cause from None
        raise InputError(f"{what}: {' '.join(str(cause).split())}") from None
