"""Rendering the app's own pages: Jinja2 (autoescape on), one inline stylesheet."""

from __future__ import annotations

import datetime as dt
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse

from mailer.config import Config

# Token pages must not be cached by proxies nor indexed: they are per subscriber.
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


def _long_date(iso: str) -> str:
    try:
        day = dt.date.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{day:%B} {day.day}, {day.year}"


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
        )
        self.env.filters["long_date"] = _long_date
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
