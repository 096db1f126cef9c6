"""``/healthz``: whether the database answers, for the load balancer."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mailer.store.archive import database_answers
from mailer.web.context import WebContext

HEALTH_TIMEOUT = 3.0  # seconds a load balancer waits for /healthz


def health_route(web: WebContext) -> Route:
    async def healthz(request: Request) -> Response:
        ok = False
        # A hung database must not hang the load balancer's check: give up after a while.
        with anyio.move_on_after(HEALTH_TIMEOUT):
            ok = await anyio.to_thread.run_sync(database_answers, web.store, abandon_on_cancel=True)
        return PlainTextResponse(
            "ok" if ok else "database unavailable",
            status_code=200 if ok else 503,
            headers={"Cache-Control": "no-store"},
        )

    return Route("/healthz", healthz, methods=["GET"])
