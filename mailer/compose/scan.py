"""A snippet's Markdown as the things an editor can get wrong, each with its source line.

For ``mailer check``: the same parser as the build (markdown-it, CommonMark), but nothing is
refused here; the line of each piece comes from markdown-it's ``token.map`` (the block's
first line) plus the line breaks before it inside the block, so a finding points at the line
the editor wrote, not at a guess from the HTML.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailer.compose.markdown import _md


@dataclass(frozen=True)
class Piece:
    """One inline piece of a snippet: ``kind`` is "text", "code", "link" or "image"."""

    kind: str
    line: int  # 1-based line of the file
    text: str  # the text; a link's visible text; an image's alt text
    target: str = ""  # a link's href or an image's src


def scan(source: str, first_line: int = 1) -> list[Piece]:
    """Every text run, inline code, link and image of ``source`` (found from ``first_line``)."""
    pieces: list[Piece] = []
    for token in _md.parse(source):
        if token.type != "inline" or not token.children or token.map is None:
            continue
        line = first_line + token.map[0]
        link: tuple[int, str, list[str]] | None = None  # (line, href, text) of an open link
        for child in token.children:
            if child.type in ("softbreak", "hardbreak"):
                line += 1
            elif child.type == "link_open":
                link = (line, str(child.attrs.get("href", "")), [])
            elif child.type == "link_close" and link is not None:
                pieces.append(Piece("link", link[0], "".join(link[2]), link[1]))
                link = None
            elif child.type == "image":
                pieces.append(Piece("image", line, child.content, str(child.attrs.get("src", ""))))
            elif child.type in ("text", "code_inline"):
                kind = "text" if child.type == "text" else "code"
                pieces.append(Piece(kind, line, child.content))
                if link is not None:
                    link[2].append(child.content)
    return pieces
