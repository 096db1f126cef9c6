"""Load an issue folder (``issue.toml`` + one Markdown file per article) into a typed model.

Every mistake an editor can make is an :class:`~mailer.errors.IssueError` naming the file and,
where it is known, the line: ``issues/025-may-2022/issue.toml:12: ...``.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mailer.compose.model import IssueMeta
from mailer.errors import IssueError

MANIFEST = "issue.toml"
SNIPPET_SUFFIX = ".md"

_MANIFEST_KEYS = {"number": int, "date": dt.date, "subject": str, "preheader": str}
_OPTIONAL_MANIFEST_KEYS = {"notice": str}
_SECTION_KEYS = ("title", "articles")
_FRONT_MATTER_KEYS = ("title", "link", "link_text", "image", "alt", "author")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_URL = re.compile(r"^(https?://[^\s/]+\S*|mailto:\S+)$")
DEFAULT_LINK_TEXT = "Read more"


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


@dataclass(frozen=True)
class Section:
    title: str  # "" for the unnamed lead section
    articles: tuple[Article, ...]


@dataclass(frozen=True)
class Issue:
    """An issue folder as read from disk, validated, not yet rendered."""

    path: Path
    meta: IssueMeta
    notice: str  # Markdown, "" when there is none
    sections: tuple[Section, ...]
    sources: tuple[tuple[str, bytes], ...]  # (file name, raw bytes): what content_hash covers
    warnings: tuple[str, ...] = ()

    @property
    def articles(self) -> tuple[Article, ...]:
        return tuple(a for s in self.sections for a in s.articles)


def load_issue(issue_dir: Path) -> Issue:
    """Read and validate ``issue_dir``; raise IssueError naming the file (and line)."""
    issue_dir = Path(issue_dir)
    if not issue_dir.is_dir():
        raise IssueError(f"{issue_dir}: no such issue folder")
    manifest_path = issue_dir / MANIFEST
    if not manifest_path.is_file():
        raise IssueError(f"{manifest_path}: missing manifest (every issue folder needs one)")
    raw_manifest = manifest_path.read_bytes()
    text = _decode(manifest_path, raw_manifest)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise IssueError(f"{manifest_path}: invalid TOML: {exc}") from None
    where = _Locator(manifest_path, text)
    meta, notice, plan = _read_manifest(data, where, issue_dir.name)

    snippets = {
        p.stem: p
        for p in sorted(issue_dir.iterdir())
        if p.suffix == SNIPPET_SUFFIX and p.is_file() and not p.name.startswith(".")
    }
    listed: dict[str, str] = {}
    for title, slugs in plan:
        for slug in slugs:
            if slug in listed:
                raise IssueError(f"{where.at(repr(slug), nth=2)}: '{slug}' is listed twice")
            listed[slug] = title
            if slug not in snippets:
                raise IssueError(
                    f"{where.at(repr(slug))}: '{slug}' is listed but "
                    f"{issue_dir / (slug + SNIPPET_SUFFIX)} does not exist"
                )
    for slug, path in snippets.items():
        if slug not in listed:
            raise IssueError(
                f"{path}: not listed in any section of {manifest_path} "
                "(add it to a section's articles, or remove the file)"
            )

    sources: list[tuple[str, bytes]] = [(MANIFEST, raw_manifest)]
    articles: dict[str, Article] = {}
    for slug, path in snippets.items():
        raw = path.read_bytes()
        sources.append((path.name, raw))
        articles[slug] = parse_snippet(path, _decode(path, raw))
    sections = tuple(Section(title, tuple(articles[s] for s in slugs)) for title, slugs in plan)

    warnings: list[str] = []
    prefix = re.match(r"^(\d+)-", issue_dir.name)
    if prefix and int(prefix.group(1)) != meta.number:
        warnings.append(
            f"{manifest_path}: number = {meta.number} but the folder is {issue_dir.name}"
        )
    for article in articles.values():
        if not article.body.strip():
            warnings.append(f"{article.path}: the article has no text")
    return Issue(issue_dir, meta, notice, sections, tuple(sources), tuple(warnings))


def parse_snippet(path: Path, text: str) -> Article:
    """One article file: YAML front matter between ``---`` lines, then Markdown."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise IssueError(f"{path}:1: front matter missing: the file must start with a '---' line")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise IssueError(f"{path}:1: front matter not closed: add a '---' line after it") from None
    front = "\n".join(lines[1:end])
    try:
        data = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        context = getattr(exc, "context_mark", None)
        if mark is not None and context is not None and mark.line >= end - 2:
            mark = context  # ran to the end (an unclosed [ or "): point where it opened
        line = f":{mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise IssueError(f"{path}{line}: malformed front matter: {problem}") from None
    if not isinstance(data, dict):
        raise IssueError(f"{path}:2: front matter must be 'key: value' lines")

    def line_of(key: str) -> int:
        for i in range(1, end):
            if re.match(rf"^\s*['\"]?{re.escape(str(key))}['\"]?\s*:", lines[i]):
                return i + 1
        return 2

    values: dict[str, str] = {}
    for key, value in data.items():
        if key not in _FRONT_MATTER_KEYS:
            allowed = ", ".join(_FRONT_MATTER_KEYS)
            raise IssueError(
                f"{path}:{line_of(key)}: unknown front matter key '{key}' (allowed: {allowed})"
            )
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise IssueError(f"{path}:{line_of(key)}: {key} must be text, got {value!r} (quote it)")
        if "\n" in value.strip() and key != "alt":
            raise IssueError(f"{path}:{line_of(key)}: {key} must be a single line")
        values[key] = " ".join(value.split())
    if not values.get("title"):
        raise IssueError(f"{path}:1: front matter needs a title")
    for key in ("link", "image"):
        if values.get(key) and not _URL.match(values[key]):
            raise IssueError(
                f"{path}:{line_of(key)}: {key} must be an absolute http(s) URL, got {values[key]!r}"
            )
    if values.get("image") and not values.get("alt"):
        raise IssueError(
            f"{path}:{line_of('image')}: image without alt text: add 'alt: ...' describing it"
        )
    if values.get("alt") and not values.get("image"):
        raise IssueError(f"{path}:{line_of('alt')}: alt given without an image")
    if "link_text" in values and not values.get("link"):
        raise IssueError(f"{path}:{line_of('link_text')}: link_text given without a link")
    body = "\n".join(lines[end + 1 :]).strip("\n") + "\n"
    return Article(
        slug=path.stem,
        path=path,
        title=values["title"],
        body=body,
        body_line=end + 2,
        link=values.get("link", ""),
        link_text=values.get("link_text") or DEFAULT_LINK_TEXT,
        image=values.get("image", ""),
        alt=values.get("alt", ""),
        author=values.get("author", ""),
    )


def _read_manifest(
    data: dict[str, Any], where: _Locator, folder: str
) -> tuple[IssueMeta, str, list[tuple[str, list[str]]]]:
    known = {*_MANIFEST_KEYS, *_OPTIONAL_MANIFEST_KEYS, "section"}
    for key in data:
        if key not in known:
            raise IssueError(
                f"{where.key(key)}: unknown key '{key}' (allowed: {', '.join(sorted(known))})"
            )
    for key, kind in (_MANIFEST_KEYS | _OPTIONAL_MANIFEST_KEYS).items():
        if key not in data:
            if key in _MANIFEST_KEYS:
                raise IssueError(f"{where.path}: missing key '{key}'")
            continue
        value = data[key]
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is dt.date and isinstance(value, dt.datetime):
            ok = False
        if not ok:
            expected = {int: "a whole number", dt.date: "a date like 2022-05-05"}.get(kind, "text")
            raise IssueError(f"{where.key(key)}: {key} must be {expected}, got {value!r}")
    if data["number"] < 1:
        raise IssueError(f"{where.key('number')}: number must be 1 or more")
    for key in ("subject", "preheader"):
        if not data[key].strip():
            raise IssueError(f"{where.key(key)}: {key} must not be empty")
        if "\n" in data[key] or "\r" in data[key]:
            raise IssueError(f"{where.key(key)}: {key} must be a single line")
    sections = data.get("section")
    if not isinstance(sections, list) or not sections:
        raise IssueError(
            f"{where.path}: missing sections: add at least one [[section]] with title and articles"
        )
    plan: list[tuple[str, list[str]]] = []
    for index, section in enumerate(sections, start=1):
        loc = where.section(index)
        if not isinstance(section, dict):
            raise IssueError(f"{loc}: each section must be a [[section]] table")
        for key in section:
            if key not in _SECTION_KEYS:
                raise IssueError(
                    f"{where.key(key, section=index)}: unknown key '{key}' in section {index} "
                    "(allowed: title, articles)"
                )
        for key in _SECTION_KEYS:
            if key not in section:
                raise IssueError(f"{loc}: section {index} is missing '{key}'")
        title, slugs = section["title"], section["articles"]
        if not isinstance(title, str):
            raise IssueError(f'{loc}: section {index}: title must be text ("" for none)')
        if not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs):
            raise IssueError(
                f"{loc}: section {index}: articles must be a list of file names without .md"
            )
        if not slugs:
            raise IssueError(f"{loc}: section {index} has no articles")
        for slug in slugs:
            if slug.endswith(SNIPPET_SUFFIX):
                raise IssueError(
                    f"{where.at(repr(slug))}: write '{slug[:-3]}', without {SNIPPET_SUFFIX}"
                )
            if not _SLUG.match(slug):
                raise IssueError(f"{where.at(repr(slug))}: '{slug}' is not a valid file name")
        plan.append((title.strip(), slugs))
    meta = IssueMeta(
        slug=folder,
        number=data["number"],
        date=data["date"],
        subject=data["subject"].strip(),
        preheader=data["preheader"].strip(),
    )
    return meta, data.get("notice", "").strip(), plan


class _Locator:
    """Finds the manifest line a message is about (tomllib reports none after parsing)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.split("\n")

    def _find(self, pattern: str, start: int = 0, nth: int = 1) -> int | None:
        seen = 0
        for i in range(start, len(self.lines)):
            if re.search(pattern, self.lines[i]):
                seen += 1
                if seen == nth:
                    return i
        return None

    def _fmt(self, index: int | None) -> str:
        return f"{self.path}:{index + 1}" if index is not None else str(self.path)

    def key(self, key: str, section: int = 0) -> str:
        """Where ``key = ...`` is, at top level or inside the ``section``-th [[section]]."""
        start = self._section_index(section) or 0 if section else 0
        return self._fmt(self._find(rf"^\s*{re.escape(key)}\s*=", start))

    def at(self, text: str, nth: int = 1) -> str:
        quoted = text.strip("'")
        return self._fmt(self._find(rf"[\"']{re.escape(quoted)}[\"']", nth=nth))

    def _section_index(self, index: int) -> int | None:
        return self._find(r"^\s*\[\[\s*section\s*\]\]", nth=index)

    def section(self, index: int) -> str:
        return self._fmt(self._section_index(index))


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IssueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")
