"""Errors as the service answers them: JSON ``{"detail": "<one line>"}`` with the status of
the module docstring of :mod:`residual_train.serve.app`."""

from __future__ import annotations

import contextlib
import errno

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from data_gen.core.errors import InputError


async def bad_input(_request, exc: InputError) -> JSONResponse:
    """An :class:`InputError` (a value out of range, an unreadable image): 422, one line."""
    return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=422)


async def bad_request(_request, exc: RequestValidationError) -> JSONResponse:
    """A request FastAPI cannot parse: 422 naming each field, its problem and the value."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
        got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
        parts.append(f"{where}: {e.get('msg', 'invalid')}{got}")
    return JSONResponse({"detail": "; ".join(parts)}, status_code=422)


def install(app: FastAPI) -> None:
    """The handlers above on ``app``."""
    app.add_exception_handler(InputError, bad_input)
    app.add_exception_handler(RequestValidationError, bad_request)


@contextlib.contextmanager
def storage_errors():
    """The server's own file-system failures as one-line HTTP errors naming no server path:
    507 when its disk is full, 500 otherwise."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise HTTPException(507, "the server's disk is full; try again later") from None
        raise HTTPException(500, f"the server cannot store the upload ({e.strerror})") from None
