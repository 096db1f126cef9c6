"""The app's answers to errors: the one 404 page, 405, 503 to retry, a plain 500."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailer.errors import DatabaseUnavailable
from mailer.web.context import WebContext

Handler = Callable[[Request, Exception], Awaitable[Response]]


def exception_handlers(web: WebContext) -> dict[type[Exception], Handler]:
    pages = web.pages

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return web.not_found()
        if exc.status_code == 405:
            return pages.error(
                405,
                "Method not allowed",
                "This address does not accept that kind of request.",
                dict(exc.headers or {}),
            )
        return pages.error(exc.status_code, "Bad request", "Nothing was changed.")

    async def unavailable(request: Request, exc: Exception) -> Response:
        return pages.error(
            503,
            "Temporarily unavailable",
            "Nothing was changed. Please try again in a minute.",
            {"Retry-After": "30"},
        )

    async def crashed(request: Request, exc: Exception) -> Response:
        return pages.error(500, "Something went wrong", "Please try again later.")

    return {HTTPException: http_error, DatabaseUnavailable: unavailable, Exception: crashed}
