"""The checks that read the issue's own files: each snippet's front matter and Markdown,
and the manifest's texts. Every finding names the line the editor wrote (markdown-it's
``token.map``, through :func:`mailer.compose.scan.scan`).

A snippet that cannot be parsed is one error (the build's own message) and the others are
still checked, so one run lists the problems of every file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from mailer.check.findings import Finding, error, from_error, warning
from mailer.check.urls import url_problem
from mailer.compose import Article, Issue
from mailer.compose.front_matter import parse_snippet
from mailer.compose.images import is_local
from mailer.compose.issue import MANIFEST, SNIPPET_SUFFIX
from mailer.compose.scan import Piece, scan
from mailer.errors import IssueError

SUBJECT_MAX = 78  # characters most inboxes show of a subject (and RFC 5322's line advice)
PREHEADER_MAX = 110  # characters of preview text the widest inboxes show

# Left-in placeholders: "TK" (journalism's "to come") and TODO as whole words in capitals,
# so Uzbek and other names that merely contain the letters never match.
PLACEHOLDERS = (
    (re.compile(r"(?<!\w)TK(?!\w)"), "TK"),
    (re.compile(r"(?<!\w)TODO(?!\w)"), "TODO"),
    (re.compile(r"lorem\s+ipsum", re.IGNORECASE), "lorem ipsum"),
    (re.compile(r"\[link\]", re.IGNORECASE), "[link]"),
)
# Link texts that say nothing out of context (a screen reader's list of links reads them
# alone). English only: a small list, not a grammar.
VAGUE_LINK_TEXTS = frozenset(
    {"click here", "click", "here", "read more", "more", "link", "this link", "this", "learn more"}
)


def read_snippets(issue_dir: Path) -> tuple[list[Article], list[Finding]]:
    """Every article file of the folder parsed on its own: (articles, errors of the others)."""
    articles: list[Article] = []
    found: list[Finding] = []
    try:
        paths = sorted(p for p in issue_dir.iterdir() if p.suffix == SNIPPET_SUFFIX)
    except OSError:
        return [], []  # the build names the folder
    for path in paths:
        if path.name.startswith(".") or not _inside(path, issue_dir):
            continue  # hidden, or a symlink out of the folder: the build refuses that one
        try:
            text = path.read_bytes().decode("utf-8-sig")
            articles.append(parse_snippet(path, text.replace("\r\n", "\n").replace("\r", "\n")))
        except IssueError as exc:
            found.append(from_error(str(exc), path))
        except (OSError, UnicodeDecodeError):
            continue  # the build says it in its own words
    return articles, found


def _inside(path: Path, issue_dir: Path) -> bool:
    try:
        return path.resolve().is_relative_to(issue_dir.resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return False


def check_articles(articles: Iterable[Article]) -> Iterator[Finding]:
    for article in articles:
        yield from _check_article(article)


def _check_article(article: Article) -> Iterator[Finding]:
    path, lines = article.path, _front_lines(article.path)
    pieces = scan(article.body, article.body_line)
    for piece in pieces:
        yield from _check_piece(path, piece)
    for key in ("title", "link_text", "alt", "author"):
        value = getattr(article, key)
        if key == "link_text" and "link_text" not in lines:
            continue  # the default "Read more" under a titled article: the layout's choice
        yield from placeholders(path, lines.get(key, 1), value)
    if "link_text" in lines and _vague(article.link_text):
        yield _vague_finding(path, lines["link_text"], article.link_text)
    if not article.body.strip():
        yield warning(path, lines.get("title", 1), "the article has no text")


# markdown-it makes no link of these schemes (CommonMark's validateLink): the brackets and
# the URL show as text, which the editor did not mean either.
_REFUSED_LINK = re.compile(r"\]\(\s*<?((?:javascript|vbscript|data|file):[^)\s>]*)", re.I)


def _check_piece(path: Path, piece: Piece) -> Iterator[Finding]:
    if piece.kind in ("text", "code"):
        yield from placeholders(path, piece.line, piece.text)
        for refused in _REFUSED_LINK.finditer(piece.text if piece.kind == "text" else ""):
            problem = url_problem(refused.group(1))
            if problem:
                yield error(path, piece.line, f"{problem} (the email shows it as text)")
    elif piece.kind == "image":
        if not piece.text.strip():
            yield error(path, piece.line, "image has no alt text: write ![what it shows](url)")
        # A file of the issue folder is published by the build (which says if it is missing).
        problem = None if is_local(piece.target) else url_problem(piece.target, image=True)
        if problem:
            yield error(path, piece.line, problem)
    elif piece.kind == "link":
        problem = url_problem(piece.target)
        if problem:
            yield error(path, piece.line, problem)
        if _vague(piece.text):
            yield _vague_finding(path, piece.line, piece.text)


def placeholders(path: Path, line: int, text: str) -> Iterator[Finding]:
    for pattern, name in PLACEHOLDERS:
        if pattern.search(text):
            yield error(path, line, f"placeholder {name} left in the text")


def _vague(text: str) -> bool:
    words = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(words.split()) in VAGUE_LINK_TEXTS


def _vague_finding(path: Path, line: int, text: str) -> Finding:
    return warning(
        path,
        line,
        f"link text {' '.join(text.split())!r} says nothing out of context: "
        "name where the link leads",
    )


def check_titles(issue: Issue) -> Iterator[Finding]:
    """A title used twice (readers and the web version's anchors cannot tell them apart)."""
    first: dict[str, Article] = {}
    for article in issue.articles:
        key = " ".join(article.title.casefold().split())
        if key in first:
            earlier = first[key]
            yield warning(
                article.path,
                _front_lines(article.path).get("title", 1),
                f"duplicated title: {earlier.path.name} has the same one",
            )
        else:
            first[key] = article


def check_manifest(issue: Issue) -> Iterator[Finding]:
    """The subject's and preheader's lengths, and placeholders in the manifest's texts."""
    path = issue.path / MANIFEST
    raw = _text(path)
    meta = issue.meta
    if len(meta.subject) > SUBJECT_MAX:
        yield warning(
            path,
            _key_line(raw, "subject"),
            f"the subject is {len(meta.subject)} characters: inboxes cut it after about "
            f"{SUBJECT_MAX}",
        )
    # An empty preheader: the build refuses it already (an error naming its line).
    if len(meta.preheader) > PREHEADER_MAX:
        yield warning(
            path,
            _key_line(raw, "preheader"),
            f"the preheader is {len(meta.preheader)} characters: inboxes show about "
            f"{PREHEADER_MAX}",
        )
    prefix = re.match(r"^(\d+)-", meta.slug)
    if prefix and int(prefix.group(1)) != meta.number:
        where = _key_line(raw, "number")
        yield warning(path, where, f"number = {meta.number} but the folder is {meta.slug}")
    for key in ("subject", "preheader"):
        yield from placeholders(path, _key_line(raw, key) or 1, getattr(meta, key))
    for section in issue.sections:
        if section.title:
            yield from placeholders(path, _line_with(raw, section.title), section.title)
    if issue.notice:
        start = _line_with(raw, issue.notice.split("\n", 1)[0])
        for piece in scan(issue.notice, start):
            yield from _check_piece(path, piece)


def _front_lines(path: Path) -> dict[str, int]:
    """The line of each front matter key of an article file."""
    lines: dict[str, int] = {}
    for number, line in enumerate(_text(path).split("\n")[1:], start=2):
        if line.strip() == "---":
            break
        found = re.match(r"^\s*['\"]?([a-z_]+)['\"]?\s*:", line)
        if found:
            lines.setdefault(found.group(1), number)
    return lines


def _key_line(raw: str, key: str) -> int | None:
    for number, line in enumerate(raw.split("\n"), start=1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return None


def _line_with(raw: str, text: str) -> int:
    for number, line in enumerate(raw.split("\n"), start=1):
        if text and text in line:
            return number
    return 1


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig", "replace").replace("\r\n", "\n")
    except OSError:
        return ""


def web_links(
    articles: Iterable[Article], issue: Issue | None = None
) -> Iterator[tuple[str, Path, int]]:
    """(url, file, line) of every well-formed http(s) link and image of the articles (and of
    the manifest's notice, given the loaded ``issue``)."""
    if issue is not None and issue.notice:
        path = issue.path / MANIFEST
        start = _line_with(_text(path), issue.notice.split("\n", 1)[0])
        for piece in scan(issue.notice, start):
            if piece.kind in ("link", "image") and _is_web(piece.target):
                yield piece.target, path, piece.line
    for article in articles:
        lines = _front_lines(article.path)
        targets = [
            (article.link, lines.get("link", 1)),
            (article.image, lines.get("image", 1)),
            *(
                (p.target, p.line)
                for p in scan(article.body, article.body_line)
                if p.kind in ("link", "image")
            ),
        ]
        for url, line in targets:
            if _is_web(url):
                yield url, article.path, line


def _is_web(url: str) -> bool:
    return url.lower().startswith(("http://", "https://")) and url_problem(url) is None
