"""The archive's endpoints: the index of public issues, each one's web version, the feed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from mailer.store.archive import archived_issues, archived_web_html
from mailer.web.context import WebContext
from mailer.web.feed import atom_feed
from mailer.web.security import ISSUE_POLICY

FEED_SIZE = 50
PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}


class ArchiveEndpoints:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET"]),
            # The path converter: a slug's %2F arrives decoded, as a "/".
            Route("/issues/{slug:path}", self.issue, methods=["GET"]),
            Route("/feed.xml", self.feed, methods=["GET"]),
        ]

    async def index(self, request: Request) -> Response:
        issues = await self.web.in_thread(archived_issues, self.web.store)
        return self.web.pages.render("archive.html.j2", headers=PUBLIC_CACHE, issues=issues)

    async def issue(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        html = await self.web.in_thread(archived_web_html, self.web.store, slug)
        if html is None:
            return self.web.not_found()
        return HTMLResponse(html, headers={"Content-Security-Policy": ISSUE_POLICY, **PUBLIC_CACHE})

    async def feed(self, request: Request) -> Response:
        issues = await self.web.in_thread(archived_issues, self.web.store, FEED_SIZE)
        config = self.web.config
        body = atom_feed(
            title=config.name, subtitle=config.tagline, base_url=config.base_url, issues=issues
        )
        return Response(
            body, media_type="application/atom+xml; charset=utf-8", headers=PUBLIC_CACHE
        )
