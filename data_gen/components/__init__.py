"""The degradation components, one object each, found by name (:data:`REGISTRY`).

:class:`~data_gen.components.base.Component` is the protocol; every module of this package
defines one component and registers it with :func:`register`, so a new component is a new
module here, its YAML in ``conf/component/`` and its tests. :data:`ORDER` is the physical
order the registered components are met in (relight → fog → defocus → lens blur → camera
shake → noise); :class:`Chain` is a checked list of them, what a dataset, a model card or
a composition names.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from data_gen.components.base import BatchContext, Component, DrawContext
from data_gen.core.errors import require

REGISTRY: dict[str, type[Component]] = {}


def register(cls: type[Component]) -> type[Component]:
    """Class decorator: make component ``cls`` known by its ``name``."""
    require(cls.name not in REGISTRY, f"component {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls
    return cls


for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

ORDER: tuple[str, ...] = tuple(sorted(REGISTRY, key=lambda n: REGISTRY[n].order))
V1 = ("blur", "noise")  # the two components of schema v1


def component_class(name: str) -> type[Component]:
    require(name in REGISTRY, f"components: unknown component {name!r}; known: {', '.join(ORDER)}")
    return REGISTRY[name]


def check_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, refused in one line when empty, unknown, listed twice or out of
    physical order."""
    require(
        isinstance(names, (list, tuple)),
        f"components = {names!r}: a list of component names, e.g. [blur, noise]",
    )
    names = tuple(str(n) for n in names)
    require(bool(names), "components = []: list at least one component (e.g. [blur, noise])")
    for n in names:
        component_class(n)
    for n in set(names):
        require(names.count(n) == 1, f"components: {n!r} is listed twice")
    pos = [ORDER.index(n) for n in names]
    require(
        pos == sorted(pos),
        f"components: [{', '.join(names)}] is out of physical order; the order is "
        + " → ".join(ORDER),
    )
    return names


def default_settings(names: Sequence[str]) -> dict[str, dict]:
    """``conf/component/<name>.yaml`` of each listed component that has settings there."""
    import yaml

    from data_gen.core.paths import CONF

    out = {}
    for n in names:
        f = CONF / "component" / f"{n}.yaml"
        if f.is_file():
            out[n] = (yaml.safe_load(f.read_text()) or {}).get(n)
    return out


@dataclass
class Chain:
    """The components of a dataset, built and checked, in physical order."""

    components: tuple[Component, ...]

    @classmethod
    def build(cls, names: Sequence[str], settings: Mapping | None = None) -> Chain:
        """Each listed component with its settings (``settings[name]``, the
        ``component.<name>`` group); only listed components are checked."""
        names = check_names(names)
        settings = settings or {}
        require(
            isinstance(settings, Mapping),
            f"component = {settings!r}: a mapping of component settings",
        )
        return cls(tuple(component_class(n).build(settings.get(n)) for n in names))

    @classmethod
    def defaults(cls, names: Sequence[str]) -> Chain:
        """The listed components with the default settings of ``conf/component/`` (the
        Python API's and the tests' way to a chain without a Hydra config)."""
        return cls.build(names, default_settings(names))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    @property
    def schema(self) -> int:
        """Storage schema: 1 for the two components of schema v1, else 2."""
        return 1 if self.names == V1 else 2

    @property
    def body(self) -> tuple[Component, ...]:
        """The components applied to an image (every one but the signal-dependent noise)."""
        return tuple(c for c in self.components if c.transport != "signal")

    @property
    def noise(self) -> Component | None:
        return next((c for c in self.components if c.transport == "signal"), None)

    @property
    def needs_depth(self) -> list[str]:
        return [c.name for c in self.components if c.needs_depth]

    def __getitem__(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def margin(self, lens_size: int) -> int:
        """Frame pixels a patch needs on every side: the sum of the blurs' radii."""
        return sum(c.margin(lens_size) for c in self.components)

    def meta_fields(self, channels: int) -> list[tuple]:
        return [f for c in self.components for f in c.meta_fields(channels)]

    def draw(self, rng, ctx: DrawContext) -> tuple[dict, dict]:
        """Each component's parameters in physical order: ``(params by name, record)``."""
        params, rec = {}, {}
        for c in self.components:
            p, r = c.draw(rng, ctx)
            params[c.name] = p
            rec.update(r)
        return params, rec


__all__ = ["ORDER", "REGISTRY", "V1", "BatchContext", "Chain", "Component", "DrawContext"]
