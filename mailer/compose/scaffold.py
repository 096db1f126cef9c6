"""`mailer new`: scaffold the next numbered issue folder with one example article."""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from pathlib import Path

from mailer.compose.issue import MANIFEST
from mailer.errors import ConfigError, IssueError

EXAMPLE_SLUG = "first-article"
_NUMBERED = re.compile(r"^(\d+)-")


def slugify(text: str, max_length: int = 40) -> str:
    """'Spring news: Tashkent!' -> 'spring-news-tashkent' (ASCII; 'issue' if nothing is left)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = slug[:max_length].rstrip("-")
    return slug or "issue"


def next_number(issues_dir: Path) -> int:
    """One more than the highest ``NNN-`` folder number in ``issues_dir`` (1 if none)."""
    try:
        entries = list(issues_dir.iterdir())
    except FileNotFoundError:
        entries = []  # created by new_issue
    except NotADirectoryError:
        raise ConfigError(f"issues_dir: {issues_dir} is not a folder") from None
    except OSError as exc:
        raise ConfigError(f"issues_dir: cannot read {issues_dir}: {exc.strerror}") from None
    numbers = [int(m.group(1)) for p in entries if p.is_dir() and (m := _NUMBERED.match(p.name))]
    return max(numbers, default=0) + 1


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(value, ensure_ascii=False)


def new_issue(issues_dir: Path, subject: str, date: dt.date | None = None) -> Path:
    """Create ``issues_dir/NNN-slug/`` with a manifest and one example article."""
    subject = " ".join(subject.split())
    if not subject:
        raise IssueError("the subject must not be empty")
    number = next_number(issues_dir)
    folder = issues_dir / f"{number:03d}-{slugify(subject)}"
    date = date or dt.date.today()
    try:
        issues_dir.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
    except FileExistsError:
        raise IssueError(f"{folder}: already exists; not overwriting it") from None
    except OSError as exc:
        raise ConfigError(f"issues_dir: cannot create {folder}: {exc.strerror}") from None
    manifest = f"""\
# Issue manifest. Every *.md file in this folder is an article; list each one in a section.
number = {number}
date = {date.isoformat()}
subject = {_toml_string(subject)}
# The preview line inboxes show next to the subject.
preheader = "What this issue is about, in one line"
# notice = "Optional Markdown shown under the masthead, e.g. a sponsor notice."
# true: an "In this issue" list under the masthead, each entry linking to its article on the
# web version (worth it from a handful of articles on).
toc = false

[[section]]
title = ""  # "" for the unnamed lead section
articles = ["{EXAMPLE_SLUG}"]

# [[section]]
# title = "Another section"
# articles = ["another-article", "and-another"]
"""
    article = """\
---
title: The headline of the first article
# link: https://example.org/the-full-story   # adds a "Read more" link
# link_text: Read the full story
# image: photo.jpg                          # a file in this folder (resized, metadata
#                                            # removed, published with the issue) or a URL
# alt: What the picture shows                # required with an image
# (in the text, too: ![What the photo shows](photo.jpg))
# author: Jane Doe
---
Write the article in Markdown: paragraphs separated by a blank line, *emphasis*,
**bold**, [links](https://example.org) and bullet lists:

- one point;
- another point.
"""
    files = {folder / MANIFEST: manifest, folder / f"{EXAMPLE_SLUG}.md": article}
    try:
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        for path in files:  # leave nothing half-written
            path.unlink(missing_ok=True)
        folder.rmdir()
        raise IssueError(f"{folder}: cannot write the new issue: {exc.strerror}") from None
    return folder
