"""The compose pipeline: issue folder -> :class:`ComposedIssue`.

load -> markdown -> jinja (MJML) -> mjml (HTML) -> premailer (inlined) -> text. The email and
the web version run the HTML stages each; the text twin comes from the same parsed snippets.
Pass ``timings`` to get seconds per stage (benchmarks/build.py prints them).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import mailer
from mailer.compose.confirmation import LAYOUT_FILES as CONFIRMATION_LAYOUTS
from mailer.compose.issue import Issue, load_issue
from mailer.compose.layout import LAYOUT, layout_context, render_layout
from mailer.compose.markdown import ParsedIssue, parse_issue
from mailer.compose.model import SLOT_MARKER, ComposedIssue, Newsletter, PersonalTemplate, slot
from mailer.compose.render import inline_css, render_mjml
from mailer.compose.text import render_text
from mailer.errors import ConfigError, IssueError

STAGES = ("load", "markdown", "jinja", "mjml", "premailer", "text")
GMAIL_CLIP_BYTES = 102_000  # Gmail cuts messages whose HTML exceeds 102 KB
SIZE_WARNING_BYTES = 90_000


class _Timer:
    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.timings is not None:
                elapsed = time.perf_counter() - start
                self.timings[stage] = self.timings.get(stage, 0.0) + elapsed


def compose_issue(
    issue_dir: Path,
    newsletter: Newsletter,
    *,
    timings: dict[str, float] | None = None,
) -> ComposedIssue:
    """Compose the issue in ``issue_dir``; IssueError (file and line) on any bad input."""
    timer = _Timer(timings)
    with timer("load"):
        issue = load_issue(Path(issue_dir))
    return compose_loaded(issue, newsletter, timings=timings)


def compose_loaded(
    issue: Issue, newsletter: Newsletter, *, timings: dict[str, float] | None = None
) -> ComposedIssue:
    """Compose an issue already read by :func:`load_issue`."""
    timer = _Timer(timings)
    for name, value in newsletter.shown():
        if SLOT_MARKER.search(value):
            raise ConfigError(f"{name}: cannot contain a %%MAILER_...%% slot marker")
    with timer("markdown"):
        parsed = parse_issue(issue, newsletter.base_url)  # local images published too
    email = render_html(parsed, newsletter, web=False, timer=timer)
    web = render_html(parsed, newsletter, web=True, timer=timer)
    with timer("text"):
        text = render_text(parsed, newsletter)

    layout = newsletter.layouts_dir / LAYOUT
    template = _template(email, layout)
    for needed in ("unsubscribe_url", "web_url"):
        if needed not in template.fields:
            raise IssueError(f"{layout}: the email must contain {{{{ slot('{needed}') }}}}")
    leaked = _template(web, layout).fields
    if leaked:
        raise IssueError(
            f"{layout}: the web version (web=true) must not use slot('{leaked[0]}'): "
            "it is published without any subscriber's data"
        )
    warnings = [*issue.warnings, *parsed.warnings]
    warning = size_warning(len(email.encode("utf-8")))
    if warning:
        warnings.append(warning)
    return ComposedIssue(
        meta=issue.meta,
        html=template,
        text=_template(text, layout),
        web_html=web,
        content_hash=content_hash(parsed, newsletter),
        warnings=tuple(warnings),
        media=parsed.media,
        images=parsed.images,
    )


def _template(text: str, layout: Path) -> PersonalTemplate:
    """The text cut at its slots (issue and config are checked first: a bad one is the layout's)."""
    try:
        return PersonalTemplate.parse(text)
    except ValueError as exc:  # an unknown %%MAILER_...%% written in the layout itself
        raise IssueError(f"{layout}: {exc}") from None


def render_html(parsed: ParsedIssue, newsletter: Newsletter, *, web: bool, timer: _Timer) -> str:
    """Layout -> MJML -> HTML -> inlined HTML, for the email (slots) or the web version."""
    layouts = newsletter.layouts_dir
    with timer("jinja"):
        mjml = render_layout(layout_context(parsed, newsletter, web=web), layouts)
    with timer("mjml"):
        html = render_mjml(mjml, layouts / LAYOUT)
    with timer("premailer"):
        return inline_css(html, layouts / LAYOUT)


def size_warning(html_bytes: int) -> str:
    if html_bytes <= SIZE_WARNING_BYTES:
        return ""
    over = "over" if html_bytes > GMAIL_CLIP_BYTES else "close to"
    return (
        f"HTML is {html_bytes:,} bytes, {over} Gmail's {GMAIL_CLIP_BYTES // 1000} KB clipping "
        "limit: shorten articles or move some to the web"
    )


def content_hash(parsed: ParsedIssue, newsletter: Newsletter) -> str:
    """sha256 of everything the output depends on: issue files, newsletter, version.

    The newsletter goes in field by field (:class:`Newsletter` says why the order matters):
    a folder as ``layouts/<file>`` entries, text as ``config/<name>``, labels kept from
    when these came from the whole config, so a ledger's recorded hashes still match. The
    sign-up's confirmation layouts are skipped: they are no part of any issue.
    """
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("mailer", mailer.__version__.encode())
    for name, raw in parsed.issue.sources:
        add(f"issue/{name}", raw)
    for image in parsed.media:  # only when there are any: earlier hashes stay as they were
        add(f"media/{image.name}", b"")  # the name is the published bytes' hash
    for f in fields(newsletter):
        value = getattr(newsletter, f.name)
        if f.metadata.get("hashed_unless_default") and value == f.default:
            continue  # as before the field existed (Newsletter says why)
        if isinstance(value, Path):
            for path in sorted(p for p in value.rglob("*") if p.is_file()):
                if path.relative_to(value).as_posix() in CONFIRMATION_LAYOUTS:
                    continue  # the sign-up's email, no part of any issue
                add(f"layouts/{path.relative_to(value).as_posix()}", _read_layout(path))
        else:
            add(f"config/{f.name}", str(value).encode())
    add("slots", slot("unsubscribe_url").encode())
    return digest.hexdigest()


def _read_layout(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IssueError(f"{path}: cannot read: {exc.strerror or exc}") from None
