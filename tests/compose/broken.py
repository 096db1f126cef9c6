"""Ways to break the small fixture issue, each with the message fragment it must produce."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def alias_bomb() -> str:
    """A "billion laughs" front matter: 9 levels of 9 aliases, 9**9 'lol's, under 400 bytes."""
    lines = ["a: &a [" + ",".join(["lol"] * 9) + "]"]
    lines += [
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    return "---\ntitle: *i\n" + "\n".join(lines) + "\n---\nText\n"


def _symlink_outside(d: Path) -> None:
    outside = d.parent / "elsewhere.md"
    outside.write_text("---\ntitle: Not part of the issue\n---\nSecret text\n")
    (d / "appointment.md").unlink()
    (d / "appointment.md").symlink_to(outside)


def _folder_for(path: Path) -> None:
    path.unlink()
    path.mkdir()


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
    # Issue 9, item 8: YAML anchors and aliases (an alias bomb), deep nesting.
    "alias bomb in front matter": (
        lambda d: (d / "appointment.md").write_text(alias_bomb()),
        "appointment.md:2: malformed front matter: anchors (&name) and aliases (*name) are not",
    ),
    "anchor in front matter": (
        lambda d: (d / "appointment.md").write_text("---\ntitle: &t Title\n---\nText\n"),
        "appointment.md:2: malformed front matter: anchors (&name) and aliases",
    ),
    "deeply nested front matter": (
        lambda d: (d / "appointment.md").write_text("---\ntitle: " + "[" * 50_000 + "\n---\n"),
        "appointment.md:2: malformed front matter: nested too deeply",
    ),
    # Item 17: slot markers in issue text, files that cannot be read.
    "unknown slot marker in a snippet": (
        lambda d: (d / "appointment.md").write_text("---\ntitle: T\n---\nHi %%MAILER_FOO%%\n"),
        "appointment.md:4: '%%MAILER_FOO%%' is reserved for the layout's per-reader slots",
    ),
    "slot marker in a title": (
        lambda d: (d / "appointment.md").write_text("---\ntitle: Hi %%MAILER_NAME%%\n---\nT\n"),
        "appointment.md:2: '%%MAILER_NAME%%' is reserved",
    ),
    "slot marker in the subject": (
        lambda d: _replace(
            d / "issue.toml", 'subject = "Spring', 'subject = "%%MAILER_FOO%% Spring'
        ),
        "issue.toml:4: '%%MAILER_FOO%%' is reserved",
    ),
    "slot marker in the subject, escaped": (
        lambda d: _replace(
            d / "issue.toml", 'subject = "Spring', 'subject = "%%MAILER\\u005fFOO%% Spring'
        ),
        "issue.toml:4: subject cannot contain a %%MAILER_...%% slot",
    ),
    "manifest is a folder": (
        lambda d: _folder_for(d / "issue.toml"),
        "issue.toml: is a folder, not a file",
    ),
    "snippet is a folder": (
        lambda d: _folder_for(d / "rankings.md"),
        "rankings.md: is a folder, not a file",
    ),
    "snippet is a dangling symlink": (
        lambda d: (d / "stray.md").symlink_to(d / "gone.md"),
        "stray.md: not listed in any section",
    ),
    # Item 18: the number fits PostgreSQL's integer and a token's 32 bits.
    "number zero": (
        lambda d: _replace(d / "issue.toml", "number = 7", "number = 0"),
        "issue.toml:2: number must be from 1 to 2147483647, got 0",
    ),
    "number over postgresql's integer": (
        lambda d: _replace(d / "issue.toml", "number = 7", "number = 2147483648"),
        "issue.toml:2: number must be from 1 to 2147483647, got 2147483648",
    ),
    "number over 32 bits": (
        lambda d: _replace(d / "issue.toml", "number = 7", "number = 4294967296"),
        "issue.toml:2: number must be from 1 to 2147483647, got 4294967296",
    ),
    # Item 23: slugs are lowercase words joined by hyphens.
    "article slug with capitals": (
        lambda d: (
            _replace(d / "issue.toml", '"appointment"', '"New_Appointment"'),
            (d / "appointment.md").rename(d / "New_Appointment.md"),
        ),
        "issue.toml:21: the article slug 'New_Appointment' must be lowercase letters and digits",
    ),
    "article slug too long": (
        lambda d: (
            _replace(d / "issue.toml", '"appointment"', '"' + "a" * 65 + '"'),
            (d / "appointment.md").rename(d / ("a" * 65 + ".md")),
        ),
        "is 65 characters long (at most 64)",
    ),
    # Item 25: a snippet may not be a symlink out of the issue folder.
    "snippet symlinked outside the folder": (
        _symlink_outside,
        "appointment.md: a symlink to ",
    ),
}
