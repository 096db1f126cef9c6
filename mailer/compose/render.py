"""Stages 3 and 4: MJML -> HTML (mjml-python), then CSS inlining (premailer), then tidying.

mjml-python does not validate (an unknown or misplaced element is dropped or crashes deep
inside), so :func:`validate_mjml` checks the structure first and names the layout line.
"""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from pathlib import Path

from mjml import mjml_to_html
from premailer import Premailer

from mailer.errors import IssueError

# Which element may sit in which (MJML's own dependency rules, for the core components).
_CONTENT_PARENTS = frozenset({"mj-column", "mj-hero"})
_PARENTS: dict[str, frozenset[str | None]] = {
    "mjml": frozenset({None}),
    "mj-head": frozenset({"mjml"}),
    "mj-body": frozenset({"mjml"}),
    **{
        tag: frozenset({"mj-head"})
        for tag in (
            "mj-attributes",
            "mj-breakpoint",
            "mj-font",
            "mj-html-attributes",
            "mj-preview",
            "mj-style",
            "mj-title",
        )
    },
    "mj-wrapper": frozenset({"mj-body"}),
    "mj-section": frozenset({"mj-body", "mj-wrapper"}),
    "mj-hero": frozenset({"mj-body", "mj-wrapper"}),
    "mj-group": frozenset({"mj-section"}),
    "mj-column": frozenset({"mj-section", "mj-group"}),
    **{
        tag: _CONTENT_PARENTS
        for tag in (
            "mj-text",
            "mj-image",
            "mj-button",
            "mj-divider",
            "mj-spacer",
            "mj-table",
            "mj-social",
            "mj-navbar",
            "mj-accordion",
            "mj-carousel",
        )
    },
    "mj-raw": frozenset(
        {"mj-head", "mj-body", "mj-wrapper", "mj-section", "mj-group", "mj-column", "mj-hero"}
    ),
    "mj-social-element": frozenset({"mj-social"}),
    "mj-navbar-link": frozenset({"mj-navbar"}),
    "mj-accordion-element": frozenset({"mj-accordion"}),
    "mj-accordion-title": frozenset({"mj-accordion-element"}),
    "mj-accordion-text": frozenset({"mj-accordion-element"}),
    "mj-carousel-image": frozenset({"mj-carousel"}),
}
# Elements whose content is HTML or text, passed through as is.
_ENDING = frozenset(
    {
        "mj-text",
        "mj-button",
        "mj-table",
        "mj-raw",
        "mj-navbar-link",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-social-element",
        "mj-style",
        "mj-title",
        "mj-preview",
    }
)


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, int]] = []  # open MJML elements and their lines
        self.error: tuple[int, str] | None = None
        self.saw_body = False

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = (self.getpos()[0], message)

    def _inside(self) -> str | None:
        return self.stack[-1][0] if self.stack else None

    def _open(self, tag: str, push: bool) -> None:
        parent = self._inside()
        if parent == "mj-attributes":
            return  # defaults: <mj-all>, <mj-class>, <mj-text ...> and so on
        if parent in _ENDING:
            if tag.startswith("mj-") or tag == "mjml":
                self._fail(f"<{tag}> cannot be inside <{parent}>")
            return
        if not (tag.startswith("mj-") or tag == "mjml"):
            where = f"inside <{parent}>" if parent else "outside <mjml>"
            self._fail(f"<{tag}> is not allowed {where}: put HTML in an <mj-text>")
            return
        allowed = _PARENTS.get(tag)
        if allowed is None:
            self._fail(f"<{tag}> is not an MJML element")
        elif parent not in allowed:
            where = f"inside <{parent}>" if parent else "at the top level"
            self._fail(f"<{tag}> is not allowed {where}")
        if tag == "mj-body":
            self.saw_body = True
        if push:
            self.stack.append((tag, self.getpos()[0]))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, push=tag.startswith("mj-") or tag == "mjml")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, push=False)

    def handle_endtag(self, tag: str) -> None:
        if not (tag.startswith("mj-") or tag == "mjml"):
            return
        if self._inside() == "mj-attributes" and tag != "mj-attributes":
            return
        if not self.stack or self.stack[-1][0] != tag:
            opened = f"<{self.stack[-1][0]}> (line {self.stack[-1][1]})" if self.stack else "none"
            self._fail(f"</{tag}> does not close the open element {opened}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        parent = self._inside()
        if data.strip() and parent not in _ENDING and parent != "mj-attributes":
            where = f"inside <{parent}>" if parent else "outside <mjml>"
            self._fail(f"text {data.strip()[:30]!r} is not allowed {where}")


def validate_mjml(mjml: str, layout: Path) -> None:
    """Raise IssueError naming the layout (and line) unless ``mjml`` is well-formed MJML."""
    checker = _Checker()
    checker.feed(mjml)
    checker.close()
    if checker.error is None and checker.stack:
        tag, line = checker.stack[-1]
        checker.error = (line, f"<{tag}> is never closed")
    if checker.error is None and not checker.saw_body:
        checker.error = (1, "no <mjml><mj-body> found")
    if checker.error is not None:
        line, message = checker.error
        raise IssueError(f"{_layout_line(mjml, line, layout)}: invalid MJML: {message}")


def _layout_line(mjml: str, line: int, layout: Path) -> str:
    """Map a line of the rendered MJML back to the layout file when it is unambiguous."""
    rendered = mjml.split("\n")
    text = rendered[line - 1].strip() if 0 < line <= len(rendered) else ""
    try:
        source = layout.read_text(encoding="utf-8").split("\n")
    except OSError:
        source = []
    hits = [i for i, s in enumerate(source, start=1) if text and text in s]
    if len(hits) == 1:
        return f"{layout}:{hits[0]}"
    return f"{layout} (line {line} of its output)"


def render_mjml(mjml: str, layout: Path) -> str:
    """MJML -> HTML, without the Google Fonts links MJML adds for some font names."""
    validate_mjml(mjml, layout)
    try:
        result = mjml_to_html(mjml)
    except Exception as exc:  # mjml-python signals bad input with any exception type
        raise IssueError(f"{layout}: MJML could not be rendered: {exc!r:.200}") from None
    if result.errors:
        raise IssueError(f"{layout}: invalid MJML: {'; '.join(result.errors)}")
    html = hide_preview(strip_web_fonts(result.html))
    if _STYLESHEET.search(html):
        raise IssueError(
            f"{layout}: the layout links an external stylesheet; put the CSS in <mj-style> "
            "(emails must not load anything to look right)"
        )
    return mark_head_only(html)


# mjml-python links Google Fonts whenever a font-family names Open Sans, Roboto, Ubuntu and
# the like: the email must not make readers' clients call Google, so drop link and @import.
_FONT_BLOCK = re.compile(
    r"<!--\[if !mso\]><!-->\s*(?:<link[^>]*fonts\.googleapis\.com[^>]*>\s*)+"
    r"<style[^>]*>\s*(?:@import url\([^)]*\);\s*)+</style>\s*<!--<!\[endif\]-->\s*",
)
_STYLESHEET = re.compile(r"<link\b[^>]*\bstylesheet\b", re.IGNORECASE)
_FONT_LINK = re.compile(r"<link[^>]*fonts\.googleapis\.com[^>]*>|@import url\([^)]*\);")


def strip_web_fonts(html: str) -> str:
    return _FONT_LINK.sub("", _FONT_BLOCK.sub("", html))


# mj-preview's div hides the preheader partly by white text on the page's colour, which spam
# filters score as hidden low-contrast text (SpamAssassin's HTML_FONT_LOW_CONTRAST): hide it
# without a colour, the robust way (display, size, opacity, overflow, mso-hide for Outlook).
_PREVIEW_DIV = re.compile(
    r'(<body\b[^>]*>\s*<div style=")display:none;font-size:1px;color:#ffffff;line-height:1px;'
    r'max-height:0px;max-width:0px;opacity:0;overflow:hidden;(">)'
)
_HIDDEN = (
    "display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;"
    "overflow:hidden;mso-hide:all;"
)


def hide_preview(html: str) -> str:
    return _PREVIEW_DIV.sub(lambda m: m.group(1) + _HIDDEN + m.group(2), html, count=1)


# MJML's reset (border-collapse, mso-table-* for every table and td) stays in <head>: the
# clients that use it (Outlook) read <head>, and inlined it would cost ~4 KB per issue.
_HEAD_ONLY = re.compile(r"<style type=\"text/css\">(?=\s*#outlook a)")


def mark_head_only(html: str) -> str:
    return _HEAD_ONLY.sub('<style type="text/css" data-premailer="ignore">', html)


def inline_css(html: str, layout: Path | None = None) -> str:
    """Inline the <style> rules into style attributes; keep media queries in <head>."""
    premailer = Premailer(
        html,
        allow_network=False,  # never fetch a stylesheet
        base_url=None,
        keep_style_tags=False,  # inlined rules leave <head>; media queries stay in a <style>
        strip_important=False,  # the responsive rules need their !important
        remove_classes=False,  # media queries select by class
        # An <img>'s width and height attributes are its size in pixels (what Outlook goes by,
        # and what clients reserve space with): the CSS width:100% and height:auto that make
        # it fit a phone must not overwrite them with "100%" and "auto".
        disable_basic_attributes=["width", "height"],
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        cache_css_parsing=False,
    )
    try:
        out: str = premailer.transform()
    except Exception as exc:  # lxml/cssutils errors: the layout's markup or CSS is broken
        where = f"{layout}: " if layout else ""
        raise IssueError(f"{where}CSS inlining failed: {exc!r:.200}") from None
    return "<!doctype html>\n" + compact(out)


_PRE = re.compile(r"(<pre\b.*?</pre>)", re.DOTALL | re.IGNORECASE)
_INDENT = re.compile(r"[ \t]*\n\s*")


def compact(html: str) -> str:
    """Drop indentation: whitespace holding a line break renders like one line break.

    Outside <pre> this changes nothing a reader sees, and saves about a tenth of the bytes
    that count against Gmail's clipping limit.
    """
    parts = _PRE.split(html)
    for i in range(0, len(parts), 2):
        parts[i] = _INDENT.sub("\n", parts[i])
    return "".join(parts).strip() + "\n"
