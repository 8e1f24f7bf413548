"""Typed settings: pydantic models whose fields are checked at the entry point.

A user-facing group of settings (a component's ``conf/component/<name>.yaml``, say) is a
:class:`Settings` subclass: unknown keys are refused, numbers are numbers (a boolean or a
string is not), integers are integers, ranges are ``[min, max]`` pairs with ``min <= max``.
:func:`parse` turns the first failure into one line naming the key, its value and what was
expected (an :class:`~data_gen.errors.InputError`), so entry points report it the project's
way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, ValidationError

from data_gen.errors import InputError


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be finite")
    return float(v)


def _ordered(v: tuple) -> tuple:
    if v[0] > v[1]:
        raise ValueError("need min <= max")
    return v


Number = Annotated[float, Strict(), AfterValidator(_finite)]
"""A finite number (an int is taken as a float; a boolean or a string is refused)."""
Integer = Annotated[int, Strict()]
"""An integer (a float such as 3.0, a boolean or a string is refused)."""
Range = Annotated[tuple[Number, Number], AfterValidator(_ordered)]
"""``[min, max]`` of finite numbers, ``min <= max``."""
IntRange = Annotated[tuple[Integer, Integer], AfterValidator(_ordered)]
"""``[min, max]`` of integers, ``min <= max``."""
Text = Annotated[str, Strict()]


class Settings(BaseModel):
    """Base of every typed settings group: no unknown keys, immutable once checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=Settings)


def _key(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int)) or "<root>"


def _value(data: Any, loc: tuple) -> Any:
    v = data
    for p in loc:
        try:
            v = v[p]
        except (KeyError, IndexError, TypeError):
            return None
    return v


def parse(model: type[S], data: Mapping | None, where: str) -> S:
    """``data`` checked as ``model``; the first problem raised as one line
    ``<where>.<key> = <value>: <what is wrong>``."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise InputError(f"{where} = {data!r}: a mapping of settings is expected")
    try:
        return model.model_validate(dict(data))
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # a check across fields: the message names its key
            raise InputError(f"{where}.{msg}") from None
        key = f"{where}.{_key(loc)}"
        if err["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            raise InputError(f"{key}: unknown setting (known: {known})") from None
        if err["type"] == "missing":
            raise InputError(f"{key}: required setting is missing") from None
        shown = _value(data, loc[:1]) if loc else data
        raise InputError(f"{key} = {shown!r}: {msg}") from None


def check(cond: bool, message: str) -> None:
    """Inside a pydantic validator: fail with ``message`` (reported by :func:`parse`)."""
    if not cond:
        raise ValueError(message)
