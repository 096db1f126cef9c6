"""Markdown -> token trees, parsed once per snippet; HTML and plain text both come from them.

CommonMark (paragraphs, lists, links, emphasis, headings, quotes, code) with raw HTML
disabled, so a snippet cannot inject markup into the email: ``<b>`` shows as text.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode
from markupsafe import Markup

from mailer.compose.images import ImagePublisher, ImageUse, PublishedImage, is_local
from mailer.compose.issue import MANIFEST, Issue, Section
from mailer.compose.model import SLOT_MARKER
from mailer.errors import IssueError
from mailer.settings import show

# Sections' titles are <h2>; an article's title is <h3> under one, <h2> in an untitled
# section (no level skipped after the masthead's <h1>); a snippet's headings sit below it.
_HEADING_SHIFT = 3

_ABSOLUTE = re.compile(r"^(https?://|mailto:|tel:|#)", re.IGNORECASE)
_md = MarkdownIt("commonmark", {"html": False, "xhtmlOut": True})


@dataclass(frozen=True)
class Parsed:
    """One Markdown text, parsed: the token stream (HTML) and its tree (plain text)."""

    tokens: tuple[Token, ...]
    warnings: tuple[str, ...] = ()

    @property
    def tree(self) -> SyntaxTreeNode:
        return SyntaxTreeNode(list(self.tokens))


def heading_level(section: Section) -> int:
    """The heading level of the titles of the section's articles."""
    return 3 if section.title else 2


def parse(
    source: str,
    path: Path | None = None,
    first_line: int = 1,
    shift: int = _HEADING_SHIFT,
    images: ImagePublisher | None = None,
) -> Parsed:
    """Parse ``source`` (found at ``path`` from ``first_line``); check images have alt text.

    Headings move down by ``shift`` levels (``#`` becomes ``<h4>`` by default), at most h6.
    With ``images``, an image naming a file (``![alt](photo.jpg)``) is published and points
    at its URL, with its width and height.
    """
    tokens = _md.parse(source)
    warnings: list[str] = []
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            level = min(int(token.tag[1]) + shift, 6)
            token.tag = f"h{level}"
        if token.type != "inline" or not token.children:
            continue
        line = first_line + (token.map[0] if token.map else 0)
        for child in token.children:
            if child.type in ("softbreak", "hardbreak"):  # the paragraph's next line
                line += 1
            where = f"{path}:{line}" if path else f"line {line}"
            made = [child.content, *(str(v) for v in child.attrs.values())]
            if any(SLOT_MARKER.search(text) for text in made):  # e.g. from %%MAILER\_NAME%%
                raise IssueError(
                    f"{where}: the text makes a %%MAILER_...%% slot marker, which issue text "
                    "cannot contain"
                )
            if child.type == "image" and not child.content.strip():
                raise IssueError(f"{where}: image without alt text: write ![what it shows](url)")
            target = str(child.attrs.get("href" if child.type == "link_open" else "src", ""))
            if child.type == "image" and images is not None and path and is_local(target):
                _publish(child, images.publish(target, path, line, child.content, url_encoded=True))
                continue
            if child.type in ("link_open", "image") and not _ABSOLUTE.match(target):
                warnings.append(
                    f"{where}: {show(target)} is not an absolute URL: it will not work in an email"
                )
    return Parsed(tuple(tokens), tuple(warnings))


def _publish(image: Token, use: ImageUse) -> None:
    image.attrs["src"] = use.url
    image.attrs["width"] = str(use.display_width)
    image.attrs["height"] = str(use.display_height)
    # The layout's rule makes images as wide as the column; this keeps a small one its size.
    image.attrs["style"] = f"max-width:{use.display_width}px"


@dataclass(frozen=True)
class ParsedIssue:
    """An issue with every Markdown text parsed once, for both the HTML and the text twin."""

    issue: Issue
    notice: Parsed | None
    notice_html: Markup
    bodies: dict[str, Parsed]  # by article slug
    html: dict[str, Markup]  # by article slug
    covers: dict[str, ImageUse] = field(default_factory=dict)  # front matter images from files
    images: tuple[ImageUse, ...] = ()  # every local image shown, in reading order

    @property
    def media(self) -> tuple[PublishedImage, ...]:
        """The files to publish under BASE_URL/media/, each once."""
        return tuple({u.image.name: u.image for u in self.images}.values())

    @property
    def warnings(self) -> tuple[str, ...]:
        texts = [self.notice, *self.bodies.values()]
        return tuple(w for p in texts if p is not None for w in p.warnings)


def parse_issue(issue: Issue, base_url: str = "") -> ParsedIssue:
    """Stage 1: every snippet's Markdown -> tokens and HTML fragments; local images published
    (for ``BASE_URL/media/``)."""
    images = ImagePublisher(issue.path, base_url)
    notice = parse(issue.notice, issue.path / MANIFEST, images=images) if issue.notice else None
    bodies: dict[str, Parsed] = {}
    covers: dict[str, ImageUse] = {}
    for section in issue.sections:
        for a in section.articles:
            if is_local(a.image):  # shown above the body: first in reading order
                covers[a.slug] = images.publish(
                    a.image, a.path, a.image_line, a.alt, url_encoded=False
                )
            bodies[a.slug] = parse(a.body, a.path, a.body_line, heading_level(section), images)
    return ParsedIssue(
        issue=issue,
        notice=notice,
        notice_html=to_html(notice) if notice else Markup(""),
        bodies=bodies,
        html={slug: to_html(p) for slug, p in bodies.items()},
        covers=covers,
        images=tuple(images.uses),
    )


def to_html(parsed: Parsed) -> Markup:
    """The snippet's HTML (safe: raw HTML in the source was escaped by the parser)."""
    return Markup(_md.renderer.render(list(parsed.tokens), _md.options, {}))


def to_text(parsed: Parsed, width: int = 78) -> str:
    """Plain text: paragraphs wrapped to ``width``, bullets, link URLs in <angle brackets>."""
    blocks = _blocks(parsed.tree.children, width)
    return "\n\n".join(blocks)


def wrap(text: str, width: int = 78, indent: str = "", first: str | None = None) -> str:
    """Wrap each line of ``text``; URLs are never broken (a lone long URL may exceed width)."""
    out: list[str] = []
    lead = indent if first is None else first
    for line in text.split("\n"):
        filled = textwrap.fill(
            line,
            width=width,
            initial_indent=lead,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        out.append(filled or lead.rstrip())
        lead = indent
    return "\n".join(out)


def _blocks(nodes: Sequence[SyntaxTreeNode], width: int, indent: str = "") -> list[str]:
    out: list[str] = []
    for node in nodes:
        kind = node.type
        if kind == "paragraph":
            out.append(wrap(_inline(node), width, indent))
        elif kind == "heading":
            title = _inline(node)
            out.append(wrap(title.upper(), width, indent))
        elif kind in ("bullet_list", "ordered_list"):
            start = int(str(node.attrs.get("start", 1))) if kind == "ordered_list" else 1
            tight = all(
                p.hidden for item in node.children for p in item.children if p.type == "paragraph"
            )
            items: list[str] = []
            for number, item in enumerate(node.children, start=start):
                marker = f"{number}. " if kind == "ordered_list" else "* "
                hang = indent + " " * (2 + len(marker))
                text = ("\n" if tight else "\n\n").join(_blocks(item.children, width, hang))
                # The first line carries the marker in place of its indent.
                items.append(indent + "  " + marker + text[len(hang) :])
            out.append(("\n" if tight else "\n\n").join(items))
        elif kind == "blockquote":
            inner = _blocks(node.children, width - 2, "")
            quoted = "\n\n".join(inner).split("\n")
            out.append("\n".join(indent + ("> " + q).rstrip() for q in quoted))
        elif kind in ("code_block", "fence"):
            code = node.content.rstrip("\n").split("\n")
            out.append("\n".join(indent + "    " + c for c in code))
        elif kind == "hr":
            out.append(indent + "-" * 20)
        else:  # html_block cannot occur (html=False); keep any text rather than lose it
            out.append(wrap(node.content, width, indent))
    return out


def _inline(block: SyntaxTreeNode) -> str:
    parts: list[str] = []
    for inline in block.children:
        parts.append(_inline_children(inline.children))
    return "".join(parts).strip()


def _inline_children(nodes: Sequence[SyntaxTreeNode]) -> str:
    parts: list[str] = []
    for node in nodes:
        kind = node.type
        if kind in ("text", "code_inline"):
            parts.append(node.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "link":
            label = _inline_children(node.children)
            href = str(node.attrs.get("href", ""))
            parts.append(label)
            if label not in (href, href.removeprefix("mailto:")):
                parts.append(f" <{href}>")
        elif kind == "image":
            parts.append(f"[{_inline_children(node.children)}]")
        else:  # em, strong: the words are what matters in plain text
            parts.append(_inline_children(node.children))
    return "".join(parts)
