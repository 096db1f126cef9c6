"""Load an issue folder (``issue.toml`` + one Markdown file per article) into a typed model.

Every mistake an editor can make is an :class:`~mailer.errors.IssueError` naming the file and,
where it is known, the line: ``issues/025-may-2022/issue.toml:12: ...``. What the folder may
hold is checked here, before anything is rendered: slugs (the folder's and the articles'),
the issue number's range, files that cannot be read, snippets that are symlinks to files
outside the folder, and mailer's slot markers, which issue text cannot contain.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailer.compose.front_matter import Article, parse_snippet
from mailer.compose.model import SLOT_MARKER, IssueMeta
from mailer.errors import IssueError
from mailer.settings import show

MANIFEST = "issue.toml"
SNIPPET_SUFFIX = ".md"
# Issue numbers are PostgreSQL integers in the ledger and 32 bits in unsubscribe tokens.
MAX_NUMBER = 2**31 - 1
# Slugs (the issue folder's name, an article's file name without .md) go into URLs and file
# names as they are: lowercase ASCII words joined by single hyphens, at most SLUG_MAX long.
SLUG_MAX = 64
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

_MANIFEST_KEYS = {"number": int, "date": dt.date, "subject": str, "preheader": str}
_OPTIONAL_MANIFEST_KEYS = {"notice": str, "toc": bool}
_SECTION_KEYS = ("title", "articles")


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
    toc: bool = False  # `toc = true`: an "In this issue" list under the masthead

    @property
    def articles(self) -> tuple[Article, ...]:
        return tuple(a for s in self.sections for a in s.articles)


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` is not a valid slug, or None when it is."""
    if len(slug) > SLUG_MAX:
        return f"is {len(slug)} characters long (at most {SLUG_MAX})"
    if not _SLUG.match(slug):
        return (
            "must be lowercase letters and digits in words joined by single hyphens "
            "(like 025-may-2022)"
        )
    return None


def load_issue(issue_dir: Path) -> Issue:
    """Read and validate ``issue_dir``; raise IssueError naming the file (and line)."""
    issue_dir = Path(issue_dir)
    if not _is_dir(issue_dir):
        raise IssueError(f"{issue_dir}: no such issue folder")
    # The folder's own name, also when given as "." or "..": it is the issue's slug.
    slug = Path(os.path.abspath(issue_dir)).name
    problem = slug_problem(slug)
    if problem:
        raise IssueError(f"{issue_dir}: the folder name {show(slug)} {problem}")
    snippets = _snippet_paths(issue_dir)  # first: names the folder if it cannot be listed
    manifest_path = issue_dir / MANIFEST
    if not os.path.lexists(manifest_path):
        raise IssueError(f"{manifest_path}: missing manifest (every issue folder needs one)")
    raw_manifest = _read(issue_dir, manifest_path)
    text = _decode(manifest_path, raw_manifest)
    _refuse_slot_markers(manifest_path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise IssueError(f"{manifest_path}: invalid TOML: {exc}") from None
    where = _Locator(manifest_path, text)
    meta, notice, plan = _read_manifest(data, where, slug)
    toc = data.get("toc", False)

    _check_plan(plan, snippets, where, issue_dir)
    sources: list[tuple[str, bytes]] = [(MANIFEST, raw_manifest)]
    articles: dict[str, Article] = {}
    for name, path in snippets.items():
        raw = _read(issue_dir, path)
        sources.append((path.name, raw))
        snippet_text = _decode(path, raw)
        _refuse_slot_markers(path, snippet_text)
        articles[name] = parse_snippet(path, snippet_text)
    sections = tuple(Section(title, tuple(articles[s] for s in slugs)) for title, slugs in plan)

    warnings: list[str] = []
    prefix = re.match(r"^(\d+)-", slug)
    if prefix and int(prefix.group(1)) != meta.number:
        warnings.append(f"{manifest_path}: number = {meta.number} but the folder is {slug}")
    for article in articles.values():
        if not article.body.strip():
            warnings.append(f"{article.path}: the article has no text")
    return Issue(issue_dir, meta, notice, sections, tuple(sources), tuple(warnings), toc)


def _snippet_paths(issue_dir: Path) -> dict[str, Path]:
    """Every ``*.md`` entry of the folder (hidden ones aside), by slug, sorted."""
    try:
        entries = sorted(issue_dir.iterdir())
    except OSError as exc:
        raise IssueError(f"{issue_dir}: cannot read the folder: {exc.strerror or exc}") from None
    return {p.stem: p for p in entries if p.suffix == SNIPPET_SUFFIX and not p.name.startswith(".")}


def _check_plan(
    plan: list[tuple[str, list[str]]], snippets: dict[str, Path], where: _Locator, issue_dir: Path
) -> None:
    """Every listed slug has its file, once; every file is listed."""
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
                f"{path}: not listed in any section of {where.path} "
                "(add it to a section's articles, or remove the file)"
            )


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError as exc:  # e.g. a parent folder that cannot be searched
        raise IssueError(f"{path}: cannot open the folder: {exc.strerror or exc}") from None


def _read(issue_dir: Path, path: Path) -> bytes:
    """The file's bytes; IssueError when it is not a readable file inside ``issue_dir``."""
    if path.is_symlink():
        try:
            target = path.resolve()
            inside = target.is_relative_to(issue_dir.resolve())
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
            raise IssueError(f"{path}: a symlink that cannot be followed") from None
        if not inside:
            raise IssueError(
                f"{path}: a symlink to {target}, outside the issue folder "
                "(copy the file into the folder instead)"
            )
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise IssueError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise IssueError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _refuse_slot_markers(path: Path, text: str) -> None:
    """Issue text cannot hold ``%%MAILER_...%%``: the markers are the layout's per-reader slots.

    In a snippet one would be filled per reader in the email but leak into the web version,
    and an unknown one breaks the send; the subject is never personalised at all.
    """
    found = SLOT_MARKER.search(text)
    if found:
        line = text.count("\n", 0, found.start()) + 1
        raise IssueError(
            f"{path}:{line}: {show(found.group(0))} is reserved for the layout's per-reader "
            "slots; issue text cannot contain it"
        )


def _read_manifest(
    data: dict[str, Any], where: _Locator, folder: str
) -> tuple[IssueMeta, str, list[tuple[str, list[str]]]]:
    """The manifest's keys checked: (meta, notice Markdown, sections' plan)."""
    known = {*_MANIFEST_KEYS, *_OPTIONAL_MANIFEST_KEYS, "section"}
    for key in data:
        if key not in known:
            raise IssueError(
                f"{where.key(key)}: unknown key {show(key)} (allowed: {', '.join(sorted(known))})"
            )
    for key, kind in (_MANIFEST_KEYS | _OPTIONAL_MANIFEST_KEYS).items():
        if key not in data:
            if key in _MANIFEST_KEYS:
                raise IssueError(f"{where.path}: missing key '{key}'")
            continue
        value = data[key]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if kind is dt.date and isinstance(value, dt.datetime):
            ok = False
        if not ok:
            expected = {
                int: "a whole number",
                dt.date: "a date like 2022-05-05",
                bool: "true or false",
            }.get(kind, "text")
            raise IssueError(f"{where.key(key)}: {key} must be {expected}, got {show(value)}")
    if not 1 <= data["number"] <= MAX_NUMBER:
        raise IssueError(
            f"{where.key('number')}: number must be from 1 to {MAX_NUMBER}, "
            f"got {show(data['number'])}"
        )
    for key in ("subject", "preheader"):
        if not data[key].strip():
            raise IssueError(f"{where.key(key)}: {key} must not be empty")
        if "\n" in data[key] or "\r" in data[key]:
            raise IssueError(f"{where.key(key)}: {key} must be a single line")
    for key in ("subject", "preheader", "notice"):
        if SLOT_MARKER.search(data.get(key, "")):  # written with TOML escapes: the text is ok
            raise IssueError(f"{where.key(key)}: {key} cannot contain a %%MAILER_...%% slot")
    meta = IssueMeta(
        slug=folder,
        number=data["number"],
        date=data["date"],
        subject=data["subject"].strip(),
        preheader=data["preheader"].strip(),
    )
    return meta, data.get("notice", "").strip(), _read_sections(data.get("section"), where)


def _read_sections(sections: object, where: _Locator) -> list[tuple[str, list[str]]]:
    """The [[section]] tables as (title, article slugs), in reading order."""
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
                    f"{where.key(key, section=index)}: unknown key {show(key)} in section {index} "
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
                    f"{where.at(repr(slug))}: write {show(slug[:-3])}, without {SNIPPET_SUFFIX}"
                )
            problem = slug_problem(slug)
            if problem:
                raise IssueError(f"{where.at(repr(slug))}: the article slug {show(slug)} {problem}")
        if SLOT_MARKER.search(title):
            raise IssueError(f"{loc}: section {index}: title cannot contain a %%MAILER_...%% slot")
        plan.append((title.strip(), slugs))
    return plan


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
