"""One article file: YAML front matter between ``---`` lines, then the Markdown body.

The front matter is a few ``key: text`` lines, so the YAML loader refuses what such lines
never need and what makes a small file expensive: anchors and aliases (a 394-byte "billion
laughs" file expands to gigabytes through them) and deep nesting (the composer recurses).
Every value an error quotes goes through :func:`~mailer.settings.show`, cut short.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mailer.compose.images import is_local
from mailer.errors import IssueError
from mailer.settings import show

FRONT_MATTER_KEYS = ("title", "link", "link_text", "image", "alt", "author")
DEFAULT_LINK_TEXT = "Read more"
_URL = re.compile(r"^(https?://[^\s/]+\S*|mailto:\S+)$")
_MAX_DEPTH = 4  # a mapping of scalars is depth 2; a stray [list] or {map} value 3
_MAX_PROBLEM = 120  # characters of a YAML error's own words


@dataclass(frozen=True)
class Article:
    slug: str
    path: Path
    title: str
    body: str  # the Markdown after the front matter
    body_line: int  # 1-based line of the file where ``body`` starts (for error messages)
    link: str = ""
    link_text: str = DEFAULT_LINK_TEXT
    image: str = ""
    alt: str = ""
    author: str = ""
    image_line: int = 0  # the line of ``image:`` (its errors name it)


class FrontMatterLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors, aliases or deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None,
                None,
                "anchors (&name) and aliases (*name) are not allowed here: write each value out",
                event.start_mark,
            )
        if self._depth >= _MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                "nested too deeply: front matter is 'key: value' lines",
                event.start_mark,
            )
        self._depth += 1
        try:
            node: yaml.Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        return node


def _load_yaml(path: Path, front: str, end: int) -> Any:
    try:
        return yaml.load(front, Loader=FrontMatterLoader) if front.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        context = getattr(exc, "context_mark", None)
        if mark is not None and context is not None and mark.line >= end - 2:
            mark = context  # ran to the end (an unclosed [ or "): point where it opened
        line = f":{mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if len(problem) > _MAX_PROBLEM:  # PyYAML quotes the text it stumbled on
            problem = problem[:_MAX_PROBLEM] + "…"
        raise IssueError(f"{path}{line}: malformed front matter: {problem}") from None


def parse_snippet(path: Path, text: str) -> Article:
    """One article file: YAML front matter between ``---`` lines, then Markdown."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise IssueError(f"{path}:1: front matter missing: the file must start with a '---' line")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise IssueError(f"{path}:1: front matter not closed: add a '---' line after it") from None
    data = _load_yaml(path, "\n".join(lines[1:end]), end)
    if not isinstance(data, dict):
        raise IssueError(f"{path}:2: front matter must be 'key: value' lines")

    def line_of(key: object) -> int:
        for i in range(1, end):
            if re.match(rf"^\s*['\"]?{re.escape(str(key))}['\"]?\s*:", lines[i]):
                return i + 1
        return 2

    values = _text_values(path, data, line_of)
    _check_values(path, values, line_of)
    rest = lines[end + 1 :]
    blank = next((i for i, line in enumerate(rest) if line), len(rest))  # stripped below
    body = "\n".join(rest).strip("\n") + "\n"
    return Article(
        slug=path.stem,
        path=path,
        title=values["title"],
        body=body,
        body_line=end + 2 + blank,
        link=values.get("link", ""),
        link_text=values.get("link_text") or DEFAULT_LINK_TEXT,
        image=values.get("image", ""),
        alt=values.get("alt", ""),
        author=values.get("author", ""),
        image_line=line_of("image") if values.get("image") else 0,
    )


def _text_values(
    path: Path, data: dict[Any, Any], line_of: Callable[[object], int]
) -> dict[str, str]:
    """Every key known and every value one line of text (alt may wrap), spaces collapsed."""
    values: dict[str, str] = {}
    for key, value in data.items():
        if key not in FRONT_MATTER_KEYS:
            allowed = ", ".join(FRONT_MATTER_KEYS)
            raise IssueError(
                f"{path}:{line_of(key)}: unknown front matter key {show(key)} (allowed: {allowed})"
            )
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise IssueError(
                f"{path}:{line_of(key)}: {key} must be text, got {show(value)} (quote it)"
            )
        if "\n" in value.strip() and key != "alt":
            raise IssueError(f"{path}:{line_of(key)}: {key} must be a single line")
        values[key] = " ".join(value.split())
    return values


def _check_values(path: Path, values: dict[str, str], line_of: Callable[[object], int]) -> None:
    if not values.get("title"):
        raise IssueError(f"{path}:1: front matter needs a title")
    for key in ("link", "image"):
        value = values.get(key)
        if value and not _URL.match(value) and not (key == "image" and is_local(value)):
            also = " or a file in the issue folder" if key == "image" else ""
            raise IssueError(
                f"{path}:{line_of(key)}: {key} must be an absolute http(s) URL{also}, "
                f"got {show(value)}"
            )
    if values.get("image") and not values.get("alt"):
        raise IssueError(
            f"{path}:{line_of('image')}: image without alt text: add 'alt: ...' describing it"
        )
    if values.get("alt") and not values.get("image"):
        raise IssueError(f"{path}:{line_of('alt')}: alt given without an image")
    if "link_text" in values and not values.get("link"):
        raise IssueError(f"{path}:{line_of('link_text')}: link_text given without a link")
