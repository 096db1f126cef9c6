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
from pathlib import Path

import mailer
from mailer.compose.issue import Issue, load_issue
from mailer.compose.layout import LAYOUT, layout_context, render_layout
from mailer.compose.markdown import ParsedIssue, parse_issue
from mailer.compose.model import ComposedIssue, PersonalTemplate, slot
from mailer.compose.render import inline_css, render_mjml
from mailer.compose.text import render_text
from mailer.config import Config
from mailer.errors import IssueError

STAGES = ("load", "markdown", "jinja", "mjml", "premailer", "text")
GMAIL_CLIP_BYTES = 102_000  # Gmail cuts messages whose HTML exceeds 102 KB
SIZE_WARNING_BYTES = 90_000
# The configuration that shows up in the output (and so in content_hash).
CONFIG_KEYS = ("name", "tagline", "copyright", "postal_address", "why_received", "base_url")


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
    issue_dir: Path, config: Config, *, timings: dict[str, float] | None = None
) -> ComposedIssue:
    """Compose the issue in ``issue_dir``; IssueError (file and line) on any bad input."""
    timer = _Timer(timings)
    with timer("load"):
        issue = load_issue(Path(issue_dir))
    return compose_loaded(issue, config, timings=timings)


def compose_loaded(
    issue: Issue, config: Config, *, timings: dict[str, float] | None = None
) -> ComposedIssue:
    """Compose an issue already read by :func:`load_issue`."""
    timer = _Timer(timings)
    with timer("markdown"):
        parsed = parse_issue(issue)
    email = render_html(parsed, config, web=False, timer=timer)
    web = render_html(parsed, config, web=True, timer=timer)
    with timer("text"):
        text = render_text(parsed, config)

    layout = config.layouts_dir / LAYOUT
    template = PersonalTemplate.parse(email)
    for needed in ("unsubscribe_url", "web_url"):
        if needed not in template.fields:
            raise IssueError(f"{layout}: the email must contain {{{{ slot('{needed}') }}}}")
    leaked = PersonalTemplate.parse(web).fields
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
        text=PersonalTemplate.parse(text),
        web_html=web,
        content_hash=content_hash(parsed, config),
        warnings=tuple(warnings),
    )


def render_html(parsed: ParsedIssue, config: Config, *, web: bool, timer: _Timer) -> str:
    """Layout -> MJML -> HTML -> inlined HTML, for the email (slots) or the web version."""
    with timer("jinja"):
        mjml = render_layout(layout_context(parsed, config, web=web), config.layouts_dir)
    with timer("mjml"):
        html = render_mjml(mjml, config.layouts_dir / LAYOUT)
    with timer("premailer"):
        return inline_css(html, config.layouts_dir / LAYOUT)


def size_warning(html_bytes: int) -> str:
    if html_bytes <= SIZE_WARNING_BYTES:
        return ""
    over = "over" if html_bytes > GMAIL_CLIP_BYTES else "close to"
    return (
        f"HTML is {html_bytes:,} bytes, {over} Gmail's {GMAIL_CLIP_BYTES // 1000} KB clipping "
        "limit: shorten articles or move some to the web"
    )


def content_hash(parsed: ParsedIssue, config: Config) -> str:
    """sha256 of everything the output depends on: issue files, layouts, config, version."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("mailer", mailer.__version__.encode())
    for name, raw in parsed.issue.sources:
        add(f"issue/{name}", raw)
    layouts = config.layouts_dir
    for path in sorted(p for p in layouts.rglob("*") if p.is_file()):
        add(f"layouts/{path.relative_to(layouts).as_posix()}", path.read_bytes())
    for key in CONFIG_KEYS:
        add(f"config/{key}", str(getattr(config, key)).encode())
    add("slots", slot("unsubscribe_url").encode())
    return digest.hexdigest()
