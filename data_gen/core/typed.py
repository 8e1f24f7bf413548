"""Typed settings: pydantic models whose fields are checked at the entry point.

A user-facing group of settings (a component's ``conf/component/<name>.yaml``, say) is a
:class:`Settings` subclass: unknown keys are refused, numbers are numbers (a boolean or a
string is not), integers are integers, ranges are ``[min, max]`` pairs with ``min <= max``.
:func:`parse` turns the first failure into one line naming the key, its value and what was
expected (an :class:`~data_gen.core.errors.InputError`), so entry points report it the project's
way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError

from data_gen.core.errors import InputError


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


def _positive(v: float) -> float:
    if not v > 0:
        raise ValueError("must be > 0")
    return v


def _not_nan(v: float) -> float:
    if math.isnan(v):
        raise ValueError("must be a number, not NaN")
    return float(v)


Positive = Annotated[float, Strict(), AfterValidator(_finite), AfterValidator(_positive)]
"""A finite number > 0."""
PositiveOrInf = Annotated[float, Strict(), AfterValidator(_not_nan), AfterValidator(_positive)]
"""A number > 0, ``.inf`` included (a focus distance)."""
Integer = Annotated[int, Strict()]
"""An integer (a float such as 3.0, a boolean or a string is refused)."""
Range = Annotated[tuple[Number, Number], AfterValidator(_ordered)]
"""``[min, max]`` of finite numbers, ``min <= max``."""
IntRange = Annotated[tuple[Integer, Integer], AfterValidator(_ordered)]
"""``[min, max]`` of integers, ``min <= max``."""
Text = Annotated[str, Strict()]


def at_least(n: int) -> AfterValidator:
    """A validator: the integer is ``>= n`` ("must be an integer >= n" otherwise)."""

    def check_(v: int) -> int:
        check(v >= n, f"must be an integer >= {n}")
        return v

    return AfterValidator(check_)


Count = Annotated[int, Strict(), at_least(1)]
"""An integer >= 1 (a boolean, a float or a string is refused)."""


class Settings(BaseModel):
    """Base of every typed settings group: no unknown keys, immutable once checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)


NullIsEmpty = BeforeValidator(lambda v: {} if v is None else v)
"""A mapping-valued key whose null means empty (``Annotated[..., NullIsEmpty]``)."""


class Record(BaseModel):
    """Base of a record read back from a file the project wrote (a manifest, a result, a
    card's entry): immutable, keys it does not name (a later version's) left alone."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class KindSettings(Settings):
    """Base of a config group whose ``kind`` picks its builder (``source``, ``sensor``,
    ``lens``): keys of another kind are left alone, as they always were — an on-the-fly
    generator override that switches the kind merges into the stored group, and the
    command line refuses unknown keys before a config gets here."""

    model_config = ConfigDict(extra="ignore", frozen=True)


S = TypeVar("S", bound=Settings)


def _named(loc: tuple) -> tuple:
    """``loc`` without its trailing list indices (an element of a range or a list is
    reported as the whole value)."""
    while loc and isinstance(loc[-1], int):
        loc = loc[:-1]
    return loc


def _key(loc: tuple) -> str:
    """``states[1].f_number``: indices inside the path as ``[i]``."""
    key = ""
    for p in _named(loc):
        key += f"[{p}]" if isinstance(p, int) else f".{p}" if key else str(p)
    return key or "<root>"


def value_at(data: Any, loc: tuple) -> Any:
    """The value at the path ``loc`` (keys and list indices) in ``data``; None if absent."""
    v = data
    for p in loc:
        try:
            v = v[p]
        except (KeyError, IndexError, TypeError):
            return None
    return v


def _model_in(ann: Any) -> type[BaseModel] | None:
    """The settings model an annotation holds (``X``, ``list[X]``, ``X | None``), if any."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return next((m for a in get_args(ann) if (m := _model_in(a)) is not None), None)


def _group(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The (nested) settings model that ``loc`` leads to."""
    for p in loc:
        if isinstance(p, int):  # an element of a list of settings
            continue
        field = model.model_fields.get(p)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            break
        model = inner
    return model


def parse(model: type[S], data: Mapping | None, where: str) -> S:
    """``data`` checked as ``model``; the first problem raised as one line
    ``<where>.<key> = <value>: <what is wrong>`` (an unknown key: ``<where>.<key>: unknown
    setting (known: ...)``). The one parser of every settings group, physics and learning.

    A check across fields names its keys: relative to ``where`` (prefixed here), or in full
    (a message starting with ``<where>.``, kept as it is)."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise InputError(f"{where or 'config'} = {data!r}: a mapping of settings is expected")
    prefix = f"{where}." if where else ""  # "": the command's own top-level keys
    try:
        return model.model_validate(dict(data))
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # a check across fields: the message names its key
            raise InputError(
                msg if prefix and msg.startswith(prefix) else f"{prefix}{msg}"
            ) from None
        key = f"{prefix}{_key(loc)}"
        if msg.startswith(f"{key}."):  # a nested group's check across its keys names them
            raise InputError(msg) from None
        if err["type"] == "extra_forbidden":
            known = ", ".join(_group(model, loc[:-1]).model_fields)
            raise InputError(f"{key}: unknown setting (known: {known})") from None
        if err["type"] == "missing":
            raise InputError(f"{key}: required setting is missing") from None
        shown = value_at(data, _named(loc) or loc[:1])  # the value the key names
        raise InputError(f"{key} = {shown!r}: {msg}") from None


def check(cond: bool, message: str) -> None:
    """Inside a pydantic validator: fail with ``message`` (reported by :func:`parse`)."""
    if not cond:
        raise ValueError(message)
