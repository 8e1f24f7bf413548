"""The one exception type for bad user input (config values, files)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message names the value, what was expected and where it came from.

    Entry points print it without a traceback and exit with status 2.
    """


def require(cond: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``cond`` holds."""
    if not cond:
        raise InputError(message)
