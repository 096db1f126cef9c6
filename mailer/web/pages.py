"""Rendering the app's own pages: Jinja2 (autoescape on), one inline stylesheet."""

from __future__ import annotations

import datetime as dt
import re
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

from mailer.config import Config
from mailer.web.urls import issue_path

# Token pages must not be cached by proxies nor indexed: they are per subscriber.
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


def _long_date(iso: str) -> str:
    try:
        day = dt.date.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{day:%B} {day.day}, {day.year}"


_MARKERS = {name: f"\x00{name}\x00" for name in ("masked", "token")}
_MARKER = re.compile("\x00(masked|token)\x00")


class Pages:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.css = files("mailer.web").joinpath("templates/style.css").read_text("utf-8")
        self.env = Environment(
            loader=PackageLoader("mailer.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # templates ship with the package: no stat() per render
        )
        self.env.filters["long_date"] = _long_date
        self.env.filters["issue_path"] = issue_path
        self._link_parts: dict[tuple[str, bool, str], tuple[str, ...]] = {}
        self.env.globals.update(
            newsletter=config.name,
            tagline=config.tagline,
            postal_address=config.postal_address,
            copyright=config.copyright,
            home=f"{config.base_url}/",
            # The exact text the CSP hash was computed over: Markup, so nothing is escaped.
            css=Markup(self.css),
        )

    def render(
        self,
        template: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=headers)

    def link(
        self,
        view: str,
        *,
        masked: str,
        token: str,
        can_resubscribe: bool,
        contact: str,
        status_code: int = 200,
    ) -> HTMLResponse:
        """A page of link.html.j2 (the unsubscribe link's pages, the hot path of a burst).

        Rendered once per (view, can_resubscribe) with markers where the masked address and
        the token go, then filled per request (escaped, as autoescape would) by a join.
        """
        key = (view, can_resubscribe, contact)
        parts = self._link_parts.get(key)
        if parts is None:
            html = self.env.get_template("link.html.j2").render(
                view=view,
                can_resubscribe=can_resubscribe,
                contact=contact,
                masked=Markup(_MARKERS["masked"]),
                token=Markup(_MARKERS["token"]),
            )
            parts = self._link_parts[key] = tuple(_MARKER.split(html))
        values = {"masked": str(escape(masked)), "token": str(escape(token))}
        # split() with a group: odd items are the marker names.
        html = "".join(values[part] if i % 2 else part for i, part in enumerate(parts))
        return HTMLResponse(html, status_code=status_code, headers=PRIVATE)

    def error(
        self, status_code: int, title: str, message: str, headers: dict[str, str] | None = None
    ) -> HTMLResponse:
        return self.render(
            "error.html.j2",
            status_code,
            {**PRIVATE, **(headers or {})},
            code=status_code,
            title=title,
            message=message,
        )
