"""Registries of named builders: a config's ``kind`` (or ``arch``) names the builder.

Names are short and stable — a dataset's config hash covers them — and each registry says
what it knows when a name is unknown (cf. BasicSR's ``ARCH_REGISTRY``)::

    SOURCES = Registry("source")

    @SOURCES.register("dead_leaves")
    def _dead_leaves(cfg, channels, where): ...

    SOURCES.build(cfg, channels)   # cfg["kind"] picks the builder
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from data_gen.core.errors import InputError


class Registry:
    """Builders by name; :meth:`build` dispatches on ``cfg[key]``."""

    def __init__(self, what: str, key: str = "kind") -> None:
        self.what, self.key = what, key
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._builders:
                raise ValueError(f"{self.what} builder {name!r} is registered twice")
            self._builders[name] = fn
            return fn

        return add

    def names(self) -> list[str]:
        return list(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def get(self, name: object, where: str | None = None) -> Callable[..., Any]:
        if name not in self._builders:
            raise InputError(
                f"{where or self.what}.{self.key} = {name!r}: use one of {', '.join(self._builders)}"
            )
        return self._builders[name]

    def build(self, cfg: Mapping, *args: Any, where: str | None = None, **kw: Any) -> Any:
        """``builder(cfg, *args, where=..., **kw)`` for ``cfg[key]``."""
        where = where or self.what
        return self.get(cfg.get(self.key), where)(cfg, *args, where=where, **kw)
