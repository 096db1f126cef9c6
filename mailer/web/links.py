"""The unsubscribe link's endpoints: GET shows, POST unsubscribes, the undo button resubscribes.

Every state change is a POST: link scanners, which only GET, can fetch an unsubscribe link
any number of times and nothing happens.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailer.store.models import SubscriberStatus
from mailer.store.unsubscribe import (
    SOURCE_ONE_CLICK,
    SOURCE_PAGE,
    LinkUnsubscribe,
    link_state,
    resubscribe_by_link,
)
from mailer.web.context import WebContext
from mailer.web.forms import small_form

# Sent by the page's button: tells it from a mail provider's one-click POST, whose body is
# List-Unsubscribe=One-Click (RFC 8058) or, from sloppier senders, anything else.
PAGE_FIELD = ("via", "page")
# Statuses whose page offers the Unsubscribe button (a bounced address may still opt out).
_CAN_LEAVE = frozenset({SubscriberStatus.ACTIVE, SubscriberStatus.BOUNCED})


class LinkEndpoints:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def routes(self) -> list[Route]:
        return [
            Route("/unsubscribe/{token}", self.unsubscribe, methods=["GET", "POST"]),
            Route("/resubscribe/{token}", self.resubscribe, methods=["POST"]),
        ]

    async def unsubscribe(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._unsubscribe(request)
        return await self._confirm(request)  # GET and HEAD

    async def _confirm(self, request: Request) -> Response:
        web = self.web
        token = request.path_params["token"]
        claims = web.claims(token)
        if claims is None:
            return web.not_found()
        state = await web.in_thread(
            link_state, web.store, claims.subscriber_uid, claims.issue_number
        )
        if state is None:
            return web.not_found()
        return web.link_page(state, "confirm" if state.status in _CAN_LEAVE else "already", token)

    async def _unsubscribe(self, request: Request) -> Response:
        web = self.web
        token = request.path_params["token"]
        claims = web.claims(token)
        if claims is None:
            return web.not_found()
        form = await small_form(request)
        if form is None:
            return web.pages.error(413, "Request too large", "Nothing was changed.")
        source = SOURCE_PAGE if form.get(PAGE_FIELD[0]) == PAGE_FIELD[1] else SOURCE_ONE_CLICK
        state = await web.batcher.unsubscribe(
            LinkUnsubscribe(claims.subscriber_uid, claims.issue_number, source)
        )
        if state is None:
            return web.not_found()
        return web.link_page(state, "done", token)

    async def resubscribe(self, request: Request) -> Response:
        web = self.web
        token = request.path_params["token"]
        claims = web.claims(token)
        if claims is None:
            return web.not_found()
        state = await web.in_thread(
            resubscribe_by_link, web.store, claims.subscriber_uid, claims.issue_number
        )
        if state is None:
            return web.not_found()
        if state.status == SubscriberStatus.ACTIVE:
            return web.link_page(state, "resubscribed", token)
        return web.link_page(state, "refused", token, 409)
