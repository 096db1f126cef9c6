"""Ways to break the small fixture issue, each with the message fragment it must produce."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# (what to break, expected message fragment: file and line where known)
BROKEN: dict[str, tuple[Callable[[Path], object], str]] = {
    "missing manifest": (lambda d: (d / "issue.toml").unlink(), "issue.toml: missing manifest"),
    "bad toml": (
        lambda d: _replace(d / "issue.toml", 'subject = "Spring', "subject = Spring"),
        "issue.toml: invalid TOML: Invalid value (at line 4",
    ),
    "missing key": (
        lambda d: _replace(d / "issue.toml", "number = 7\n", ""),
        "issue.toml: missing key 'number'",
    ),
    "extra key": (
        lambda d: _replace(d / "issue.toml", "number = 7\n", "number = 7\nauthor = 'me'\n"),
        "issue.toml:3: unknown key 'author'",
    ),
    "wrong type": (
        lambda d: _replace(d / "issue.toml", "number = 7", 'number = "seven"'),
        "issue.toml:2: number must be a whole number, got 'seven'",
    ),
    "date as text": (
        lambda d: _replace(d / "issue.toml", "date = 2022-04-07", 'date = "April 7"'),
        "issue.toml:3: date must be a date like 2022-05-05",
    ),
    "unknown section key": (
        lambda d: _replace(d / "issue.toml", 'title = "New appointments"', 'name = "New"'),
        "issue.toml:20: unknown key 'name' in section 3",
    ),
    "section without articles key": (
        lambda d: _replace(d / "issue.toml", 'articles = ["appointment"]', ""),
        "issue.toml:19: section 3 is missing 'articles'",
    ),
    "no sections": (
        lambda d: (d / "issue.toml").write_text(
            'number = 7\ndate = 2022-04-07\nsubject = "S"\npreheader = "P"\n'
        ),
        "issue.toml: missing sections",
    ),
    "listed snippet missing": (
        lambda d: (d / "rankings.md").unlink(),
        "issue.toml:17: 'rankings' is listed but",
    ),
    "snippet not listed": (
        lambda d: (d / "stray.md").write_text("---\ntitle: Stray\n---\nText\n"),
        "stray.md: not listed in any section",
    ),
    "slug listed twice": (
        lambda d: _replace(d / "issue.toml", '["appointment"]', '["appointment", "rankings"]'),
        "issue.toml:21: 'rankings' is listed twice",
    ),
    "slug with .md": (
        lambda d: _replace(d / "issue.toml", '"appointment"', '"appointment.md"'),
        "issue.toml:21: write 'appointment', without .md",
    ),
    "front matter not closed": (
        lambda d: (d / "appointment.md").write_text("---\ntitle: T\nText\n"),
        "appointment.md:1: front matter not closed",
    ),
    "no front matter": (
        lambda d: (d / "appointment.md").write_text("Just text\n"),
        "appointment.md:1: front matter missing",
    ),
    "malformed front matter": (
        lambda d: (d / "appointment.md").write_text("---\ntitle: T\nlink: [oops\n---\nText\n"),
        "appointment.md:3: malformed front matter",
    ),
    "unclosed bracket in front matter": (
        lambda d: (d / "appointment.md").write_text(
            "---\ntitle: [oops\n# link: https://example.org\n# author: A\n---\nText\n"
        ),
        "appointment.md:2: malformed front matter",
    ),
    "unknown front matter key": (
        lambda d: (d / "appointment.md").write_text("---\ntitle: T\nsection: x\n---\nText\n"),
        "appointment.md:3: unknown front matter key 'section'",
    ),
    "title missing": (
        lambda d: (d / "appointment.md").write_text("---\nauthor: A\n---\nText\n"),
        "appointment.md:1: front matter needs a title",
    ),
    "title not text": (
        lambda d: (d / "appointment.md").write_text("---\ntitle: 2022\n---\nText\n"),
        "appointment.md:2: title must be text, got 2022",
    ),
    "image without alt": (
        lambda d: (d / "appointment.md").write_text(
            "---\ntitle: T\nimage: https://example.org/a.png\n---\nText\n"
        ),
        "appointment.md:3: image without alt text",
    ),
    "relative link": (
        lambda d: (d / "appointment.md").write_text("---\ntitle: T\nlink: /read\n---\nText\n"),
        "appointment.md:3: link must be an absolute http(s) URL",
    ),
    "not utf-8": (
        lambda d: (d / "appointment.md").write_bytes(b"---\ntitle: caf\xe9\n---\n"),
        "appointment.md: not UTF-8 text",
    ),
}
