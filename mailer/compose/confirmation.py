"""The confirmation email of a sign-up: subject, HTML and text from two small layouts.

``confirm.html.j2`` and ``confirm.txt.j2`` in the layouts folder (``mailer init`` copies the
defaults there; a folder without them uses the built-in ones). They see only the
newsletter's own fields, the link and how many days it works, so nothing a stranger typed
into the form can reach the email. The HTML is autoescaped; the text is not (it is text).
The subject is the text layout's ``{% set subject = ... %}``.

These files are no part of any issue's content hash (:func:`mailer.compose.pipeline.
content_hash` skips them): editing the confirmation email must not stop an issue's send.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import jinja2

from mailer.compose.layout import DEFAULT_LAYOUTS, text_direction
from mailer.compose.model import Newsletter
from mailer.errors import IssueError

CONFIRM_HTML = "confirm.html.j2"
CONFIRM_TEXT = "confirm.txt.j2"
LAYOUT_FILES = frozenset({CONFIRM_HTML, CONFIRM_TEXT})


@dataclass(frozen=True)
class ConfirmationEmail:
    subject: str
    html: str
    text: str


@functools.lru_cache(maxsize=8)
def _environment(layouts_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        # The newsletter's own layouts first, then the built-in ones.
        loader=jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(layouts_dir), jinja2.FileSystemLoader(DEFAULT_LAYOUTS)]
        ),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_confirmation(newsletter: Newsletter, confirm_url: str, days: int) -> ConfirmationEmail:
    """The email for a link ``confirm_url`` that works ``days`` days; IssueError naming the
    layout file and line when a layout is broken."""
    env = _environment(newsletter.layouts_dir.resolve())
    context = {
        "newsletter": dict(newsletter.shown()),
        "dir": text_direction(newsletter.language),
        "confirm_url": confirm_url,
        "days": days,
    }
    name = CONFIRM_TEXT
    try:
        text_layout = env.get_template(CONFIRM_TEXT)
        text = text_layout.render(context)
        subject = str(getattr(text_layout.make_module(context), "subject", "")).strip()
        name = CONFIRM_HTML
        html = env.get_template(CONFIRM_HTML).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise IssueError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise IssueError(f"{newsletter.layouts_dir / name}: {exc}") from None
    if not subject:
        raise IssueError(f"{newsletter.layouts_dir / CONFIRM_TEXT}: sets no subject")
    return ConfirmationEmail(subject=" ".join(subject.split()), html=html, text=text)
