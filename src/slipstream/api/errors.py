"""The one table mapping exceptions to HTTP statuses; handlers raise, never build error bodies."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from slipstream.errors import (
    CommandFailed,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SlipstreamError,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("slipstream.api")

STATUS: list[tuple[type[SlipstreamError], int]] = [
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (CommandFailed, 502),
    (Unavailable, 503),
    (SlipstreamError, 400),
]


def status_for(exc: SlipstreamError) -> int:
    """The HTTP status of an expected failure."""
    return next(code for cls, code in STATUS if isinstance(exc, cls))


def error_response(exc: SlipstreamError) -> JSONResponse:
    """The body and status every expected failure answers with (a 401 also names the scheme)."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
    return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=status_for(exc), headers=headers)


async def handle_expected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SlipstreamError)
    return error_response(exc)


async def handle_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A request whose body or parameters do not fit the API: 422, in the shape of every error."""
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg', 'invalid')}" for e in exc.errors()
    )
    return JSONResponse(
        {"error": f"invalid request: {problems}", "hint": "see the API's schema at /docs"}, status_code=422
    )


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal error in the slipstream daemon", "hint": "see daemon.log"}, status_code=500)
