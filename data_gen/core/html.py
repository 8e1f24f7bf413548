"""HTML pages from Jinja2 templates, the one way the reports and pages are written.

A package keeps its pages in ``templates/*.html.j2`` (shipped as package data); code
computes plain values (rows, captions, file names) and :func:`render` fills them in with
autoescaping on, so every value is text unless the code marks it :class:`Markup` (a
fragment it built and vouches for). :func:`table` formats rows for a template's table.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

__all__ = ["Markup", "environment", "render", "table"]


@cache
def environment(*packages: str) -> Environment:
    """The Jinja2 environment that looks a template up in each of ``packages``'
    ``templates/`` folders in turn (so a page can extend another package's layout);
    autoescaping on, an undefined value an error."""
    return Environment(
        loader=ChoiceLoader([PackageLoader(p, "templates") for p in packages]),
        autoescape=select_autoescape(["html", "html.j2"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, *packages: str, **values) -> str:
    """The HTML of ``template`` (found in ``packages``, :func:`environment`) with ``values``."""
    return environment(*packages).get_template(template).render(**values)


def table(
    rows: list[dict],
    cols: list[str],
    fmt: str,
    classes: Callable[[dict, str], str | None] | None = None,
) -> dict:
    """``{"cols": cols, "rows": [[(text, css class or None), ...], ...]}``: ``rows`` (dicts)
    as the cells of a table with columns ``cols``; floats use ``fmt``, anything else
    ``str`` (a missing value is empty). ``classes``: optional ``(row, col) -> css class``
    to mark cells."""
    return {
        "cols": list(cols),
        "rows": [
            [(_text(r.get(c, ""), fmt), classes(r, c) if classes else None) for c in cols]
            for r in rows
        ],
    }


def _text(v, fmt: str) -> str:
    return fmt.format(v) if isinstance(v, float) else str(v)
