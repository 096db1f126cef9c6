"""The web app: one-click unsubscribe links, the archive of sent issues, the sign-up form.

``create_app()`` is an ASGI application factory (``uvicorn --factory mailer.web:create_app``).
It opens the store once, in the lifespan (:class:`~mailer.web.context.WebContext`). Database
reads run in a few worker threads, so a slow query never stalls the event loop; unsubscribes
are committed in batches (group commit, see :mod:`mailer.web.batching`). The endpoints are in
:mod:`mailer.web.links` (unsubscribe, resubscribe), :mod:`mailer.web.archive`,
:mod:`mailer.web.health`, :mod:`mailer.web.media` (published images),
:mod:`mailer.web.signup` (the form and its confirmation link) and
:mod:`mailer.web.preferences`; the error pages in :mod:`mailer.web.error_pages`.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from mailer.config import Config, load_config
from mailer.web.archive import ArchiveEndpoints
from mailer.web.context import WebContext
from mailer.web.error_pages import exception_handlers
from mailer.web.health import health_route
from mailer.web.links import LinkEndpoints
from mailer.web.media import MediaEndpoints
from mailer.web.preferences import PreferenceEndpoints
from mailer.web.security import SecurityHeaders, base_headers, page_policy
from mailer.web.signup import SignupEndpoints


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
    web = WebContext(config)
    app = _App(
        security_headers=base_headers(
            page_policy(web.pages.css), https=config.base_url.startswith("https://")
        ),
        routes=[
            *ArchiveEndpoints(web).routes(),
            health_route(web),
            *LinkEndpoints(web).routes(),
            *MediaEndpoints(web).routes(),
            *SignupEndpoints(web).routes(),
            *PreferenceEndpoints(web).routes(),
        ],
        exception_handlers=exception_handlers(web),
        lifespan=lambda app: web.running(),
    )
    # /unsubscribe/<token>/ must not redirect: one-click POSTs never follow redirects.
    app.router.redirect_slashes = False
    app.state.web = web
    return app
