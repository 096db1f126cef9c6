"""The web app: one-click unsubscribe links and the archive of sent issues.

``create_app()`` is an ASGI application factory (``uvicorn --factory mailer.web:create_app``).
It opens the store once, in the lifespan. Database reads run in a few worker threads, so a
slow query never stalls the event loop; unsubscribes are committed in batches (group commit,
see :mod:`mailer.web.batching`). Every state change is a POST: link scanners, which only GET,
can fetch an unsubscribe link any number of times and nothing happens.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from email.message import Message
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartParser
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from mailer.config import Config, load_config
from mailer.errors import DatabaseUnavailable, TokenError
from mailer.store.archive import archived_issues, archived_web_html, database_answers
from mailer.store.checkpoint import WalCheckpointer
from mailer.store.db import Store, open_store
from mailer.store.models import SubscriberStatus
from mailer.store.unsubscribe import (
    SOURCE_ONE_CLICK,
    SOURCE_PAGE,
    LinkState,
    LinkUnsubscribe,
    link_state,
    resubscribe_by_link,
)
from mailer.tokens import TokenClaims, read_token
from mailer.web.batching import UnsubscribeBatcher
from mailer.web.feed import atom_feed
from mailer.web.masking import mask_address
from mailer.web.pages import Pages
from mailer.web.security import ISSUE_POLICY, SecurityHeaders, base_headers, page_policy

MAX_BODY = 64 * 1024  # a one-click body is 26 bytes; anything huge is not a mail provider
HEALTH_TIMEOUT = 3.0  # seconds a load balancer waits for /healthz
FEED_SIZE = 50
DB_THREADS = 4
T = TypeVar("T")
# Sent by the page's button: tells it from a mail provider's one-click POST, whose body is
# List-Unsubscribe=One-Click (RFC 8058) or, from sloppier senders, anything else.
PAGE_FIELD = ("via", "page")


class _App(Starlette):
    """Starlette whose outermost layer adds the security headers (even to a crash's 500)."""

    def __init__(self, *, security_headers: dict[str, str], **kwargs: Any) -> None:
        self.security_headers = security_headers
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), self.security_headers)


def create_app(config: Config | None = None) -> Starlette:
    """The ASGI app for ``config`` (default: ``load_config()``, i.e. MAILER_CONFIG or cwd)."""
    config = config or load_config()
    keys = config.secret_keys()  # fail at start-up, not on the first click
    pages = Pages(config)

    async def in_thread(function: Callable[..., T], *args: Any) -> T:
        # A few worker threads at a time (see lifespan).
        limiter: anyio.CapacityLimiter = app.state.db_threads
        return await anyio.to_thread.run_sync(function, *args, limiter=limiter)

    def store_of(request: Request) -> Store:
        store: Store = request.app.state.store
        return store

    def claims_of(request: Request) -> TokenClaims | None:
        try:
            return read_token(keys, request.path_params["token"])
        except TokenError:  # malformed or forged: the one 404, nothing else
            return None

    def not_found() -> HTMLResponse:
        return pages.error(404, "Page not found", "This link is not valid (any more).")

    def link_page(state: LinkState, view: str, token: str, status_code: int = 200) -> HTMLResponse:
        return pages.link(
            view,
            masked=mask_address(state.email),
            token=token,
            can_resubscribe=state.can_resubscribe,
            contact=config.reply_to or config.from_address,
            status_code=status_code,
        )

    class Unsubscribe(HTTPEndpoint):
        async def get(self, request: Request) -> Response:
            claims = claims_of(request)
            if claims is None:
                return not_found()
            state = await in_thread(
                link_state, store_of(request), claims.subscriber_uid, claims.issue_number
            )
            if state is None:
                return not_found()
            view = "confirm" if state.status in _CAN_LEAVE else "already"
            return link_page(state, view, request.path_params["token"])

        async def post(self, request: Request) -> Response:
            claims = claims_of(request)
            if claims is None:
                return not_found()
            form = await _small_form(request)
            if form is None:
                return pages.error(413, "Request too large", "Nothing was changed.")
            source = SOURCE_PAGE if form.get(PAGE_FIELD[0]) == PAGE_FIELD[1] else SOURCE_ONE_CLICK
            batcher: UnsubscribeBatcher = request.app.state.batcher
            state = await batcher.unsubscribe(
                LinkUnsubscribe(claims.subscriber_uid, claims.issue_number, source)
            )
            if state is None:
                return not_found()
            return link_page(state, "done", request.path_params["token"])

    class Resubscribe(HTTPEndpoint):
        async def post(self, request: Request) -> Response:
            claims = claims_of(request)
            if claims is None:
                return not_found()
            state = await in_thread(
                resubscribe_by_link,
                store_of(request),
                claims.subscriber_uid,
                claims.issue_number,
            )
            if state is None:
                return not_found()
            token = request.path_params["token"]
            if state.status == SubscriberStatus.ACTIVE:
                return link_page(state, "resubscribed", token)
            return link_page(state, "refused", token, 409)

    async def archive(request: Request) -> Response:
        issues = await in_thread(archived_issues, store_of(request))
        return pages.render(
            "archive.html.j2",
            headers={"Cache-Control": "public, max-age=300"},
            issues=issues,
        )

    async def issue(request: Request) -> Response:
        html = await in_thread(archived_web_html, store_of(request), request.path_params["slug"])
        if html is None:
            return not_found()
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": ISSUE_POLICY,
                "Cache-Control": "public, max-age=300",
            },
        )

    async def feed(request: Request) -> Response:
        issues = await in_thread(archived_issues, store_of(request), FEED_SIZE)
        body = atom_feed(
            title=config.name,
            subtitle=config.tagline,
            base_url=config.base_url,
            issues=issues,
        )
        return Response(
            body,
            media_type="application/atom+xml; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    async def healthz(request: Request) -> Response:
        ok = False
        # A hung database must not hang the load balancer's check: give up after a while.
        with anyio.move_on_after(HEALTH_TIMEOUT):
            ok = await anyio.to_thread.run_sync(
                database_answers, store_of(request), abandon_on_cancel=True
            )
        return PlainTextResponse(
            "ok" if ok else "database unavailable",
            status_code=200 if ok else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return not_found()
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

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await run_in_threadpool(open_store, config.database_url)
        app.state.store = store
        app.state.batcher = UnsubscribeBatcher(store)
        checkpoints = WalCheckpointer(store)
        checkpoints.start()
        # Database reads run in worker threads, a few at a time: more would only take turns
        # at the GIL (and the connection pool) and stretch every request's latency.
        app.state.db_threads = anyio.CapacityLimiter(DB_THREADS)
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # GC's full collections, which would otherwise pause every request in flight.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await run_in_threadpool(checkpoints.stop)
            store.close()

    app = _App(
        security_headers=base_headers(
            page_policy(pages.css), https=config.base_url.startswith("https://")
        ),
        routes=[
            Route("/", archive, methods=["GET"]),
            # The path converter: a slug's %2F arrives decoded, as a "/".
            Route("/issues/{slug:path}", issue, methods=["GET"]),
            Route("/feed.xml", feed, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/unsubscribe/{token}", Unsubscribe),
            Route("/resubscribe/{token}", Resubscribe),
        ],
        exception_handlers={
            HTTPException: http_error,
            DatabaseUnavailable: unavailable,
            Exception: crashed,
        },
        lifespan=lifespan,
    )
    # /unsubscribe/<token>/ must not redirect: one-click POSTs never follow redirects.
    app.router.redirect_slashes = False
    app.state.config = config
    return app


# Statuses whose page offers the Unsubscribe button (a bounced address may still opt out).
_CAN_LEAVE = frozenset({SubscriberStatus.ACTIVE, SubscriberStatus.BOUNCED})


async def _small_form(request: Request) -> dict[str, str] | None:
    """The POST body's text fields, read up to MAX_BODY (None when larger).

    A body that is not a form, or a malformed one, gives no fields: it is still a POST to a
    valid link, which is what unsubscribes.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    kind = _content_type(request.headers)
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if kind == "multipart/form-data":

        async def one_chunk() -> AsyncGenerator[bytes, None]:
            yield body

        parser = MultiPartParser(request.headers, one_chunk(), max_files=0, max_fields=20)
        try:
            form = await parser.parse()
        except Exception:
            return {}
        return {key: value for key, value in form.multi_items() if isinstance(value, str)}
    return {}


def _content_type(headers: Headers) -> str:
    message = Message()
    message["content-type"] = headers.get("content-type", "")
    return message.get_content_type()
