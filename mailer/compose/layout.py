"""Stage 2: the Jinja2 layout in ``layouts/`` turns the parsed issue into MJML.

Autoescape is on (titles and config values are text, snippet bodies arrive as Markup from the
Markdown stage) and undefined variables are errors, reported with the layout's file and line.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from babel import Locale, UnknownLocaleError

from mailer.compose.front_matter import Article
from mailer.compose.images import COLUMN_WIDTH
from mailer.compose.markdown import ParsedIssue, heading_level
from mailer.compose.model import PERSONAL_FIELDS, Newsletter, slot
from mailer.errors import IssueError
from mailer.settings import show

LAYOUT = "newsletter.mjml.j2"  # the email's layout, in Newsletter.layouts_dir

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def date_text(d: dt.date) -> str:
    """'May 5, 2022': fixed English month names, whatever the machine's locale."""
    return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"


@functools.cache
def text_direction(language: str) -> str:
    """``"rtl"`` for a language written right to left (ar, he, fa-IR, ur, az-Arab), else ``"ltr"``.

    From CLDR's data, through Babel. A tag CLDR does not know is tried without its last
    subtags (``ar-XX`` as ``ar``); a language it does not know at all is taken as ltr.
    """
    subtags = language.split("-")
    while subtags:
        try:
            direction: str = Locale.parse("-".join(subtags), sep="-").text_direction
        except (UnknownLocaleError, ValueError):
            subtags.pop()
            continue
        return direction
    return "ltr"


def layout_context(parsed: ParsedIssue, newsletter: Newsletter, *, web: bool) -> dict[str, Any]:
    """What the layout sees: ``newsletter``, ``issue``, ``sections``, ``toc``, ``dir``, ``web``,
    ``slot()``.

    ``dir`` is the text direction of ``newsletter.language``; each article's ``level`` is its
    title's heading level (2 under an untitled section, 3 under a section's <h2>); ``toc`` is
    empty unless the manifest says ``toc = true`` (:func:`table_of_contents`).
    """
    issue = parsed.issue
    sections = [
        {
            "title": section.title,
            "articles": [
                {
                    "slug": a.slug,
                    "level": heading_level(section),
                    "title": a.title,
                    "html": parsed.html[a.slug],
                    "link": a.link,
                    "link_text": a.link_text,
                    "author": a.author,
                    **_image(parsed, a),
                }
                for a in section.articles
            ],
        }
        for section in issue.sections
    ]
    return {
        "newsletter": dict(newsletter.shown()),
        "issue": {
            "number": issue.meta.number,
            "date": issue.meta.date,
            "date_text": date_text(issue.meta.date),
            "subject": issue.meta.subject,
            "preheader": issue.meta.preheader,
            "slug": issue.meta.slug,
            "notice": parsed.notice_html,
        },
        "sections": sections,
        "toc": table_of_contents(parsed, newsletter, web=web) if issue.toc else [],
        "dir": text_direction(newsletter.language),
        "web": web,
    }


def _image(parsed: ParsedIssue, article: Article) -> dict[str, Any]:
    """The front matter image: a published file's URL and size, or a URL as written."""
    use = parsed.covers.get(article.slug)
    if use is not None:
        return {
            "image": use.url,
            "alt": use.alt,
            "image_width": use.display_width,
            "image_height": use.display_height,
        }
    return {
        "image": article.image,
        "alt": article.alt,
        "image_width": COLUMN_WIDTH,
        "image_height": None,
    }


def issue_url(newsletter: Newsletter, slug: str) -> str:
    """The issue's web version on ``mailer serve`` (mailer.web.urls.issue_path's path)."""
    return f"{newsletter.base_url}/issues/{quote(slug, safe='')}"


def table_of_contents(
    parsed: ParsedIssue, newsletter: Newsletter, *, web: bool
) -> list[dict[str, Any]]:
    """``toc = true``: per section, its title, the number of its first entry, and entries
    (title, the article's anchor on the web version: in-email anchors do not work in iOS
    Mail, the Gmail apps or Outlook mobile). The web version links within itself."""
    page = "" if web else issue_url(newsletter, parsed.issue.meta.slug)
    groups: list[dict[str, Any]] = []
    number = 1
    for section in parsed.issue.sections:
        entries = [{"title": a.title, "url": f"{page}#{a.slug}"} for a in section.articles]
        groups.append({"title": section.title, "start": number, "entries": entries})
        number += len(entries)
    return groups


def _slot(name: str) -> str:
    if name not in PERSONAL_FIELDS:
        raise jinja2.UndefinedError(
            f"slot({show(name)}) is not a personal field (one of {', '.join(PERSONAL_FIELDS)})"
        )
    return slot(name)


def environment(layouts_dir: Path) -> jinja2.Environment:
    try:
        os.listdir(layouts_dir)  # Jinja would take an unreadable folder for a missing layout
    except (FileNotFoundError, NotADirectoryError):
        raise IssueError(
            f"{layouts_dir}: layouts folder not found (set layouts_dir in mailer.toml)"
        ) from None
    except OSError as exc:
        raise IssueError(f"{layouts_dir}: cannot read the layouts folder: {exc.strerror}") from None
    return _environment(layouts_dir.resolve())


@functools.lru_cache(maxsize=8)
def _environment(layouts_dir: Path) -> jinja2.Environment:
    # Cached so templates compile once; Jinja reloads a template whose file has changed.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(layouts_dir),
        autoescape=True,  # MJML is markup: escape every value that is not Markup already
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["slot"] = _slot
    return env


def render_layout(context: dict[str, Any], layouts_dir: Path, name: str = LAYOUT) -> str:
    """Render ``layouts_dir/name`` to MJML; IssueError naming the layout file and line."""
    env = environment(layouts_dir)
    path = layouts_dir / name
    try:
        template = env.get_template(name)
        return template.render(context)
    except jinja2.TemplateNotFound as exc:
        raise IssueError(f"{layouts_dir / str(exc.name)}: layout not found") from None
    except jinja2.TemplateSyntaxError as exc:
        where = Path(exc.filename) if exc.filename else path
        raise IssueError(f"{where}:{exc.lineno}: layout syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise IssueError(f"{_template_line(exc, path)}: unknown template variable: {exc}") from None
    except jinja2.TemplateError as exc:
        raise IssueError(f"{_template_line(exc, path)}: layout error: {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:  # e.g. a filter on the wrong type
        raise IssueError(f"{_template_line(exc, path)}: layout error: {exc}") from None
    except OSError as exc:  # the layout (or a file it includes) cannot be read
        where = exc.filename or path
        raise IssueError(f"{where}: cannot read: {exc.strerror or exc}") from None


def _template_line(exc: BaseException, default: Path) -> str:
    """``file:line`` of the innermost template frame (Jinja rewrites tracebacks to them)."""
    found = str(default)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith((".j2", ".mjml", ".html")) and frame.lineno:
            found = f"{frame.filename}:{frame.lineno}"
    return found


DEFAULT_LAYOUTS = Path(__file__).parent / "default_layouts"


def install_default_layouts(layouts_dir: Path) -> list[Path]:
    """Copy the built-in layouts into ``layouts_dir`` where missing; return what was written.

    `mailer init` calls this so a new newsletter has a layout to start from and customise.
    Existing files are never overwritten.
    """
    written = []
    layouts_dir.mkdir(parents=True, exist_ok=True)
    for source in sorted(DEFAULT_LAYOUTS.iterdir()):
        target = layouts_dir / source.name
        if source.is_file() and not target.exists():
            target.write_bytes(source.read_bytes())
            written.append(target)
    return written
