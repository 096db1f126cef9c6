"""Stage 0: reading an issue folder (manifest + snippets) into the typed model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mailer.compose import load_issue
from mailer.compose.issue import parse_snippet
from mailer.errors import IssueError
from tests.conftest import SAMPLE_ISSUE


def test_small_issue_loads_in_manifest_order(issue: Path) -> None:
    loaded = load_issue(issue)
    assert loaded.meta.number == 7
    assert loaded.meta.date == dt.date(2022, 4, 7)
    assert loaded.meta.slug == "007-spring-2022"
    assert loaded.meta.subject == "Spring news from the valley"
    assert loaded.notice.startswith("This issue is prepared")
    assert [s.title for s in loaded.sections] == ["", "Rankings & reports", "New appointments"]
    assert [a.slug for a in loaded.articles] == [
        "study-tour",
        "public-groups",
        "rankings",
        "appointment",
    ]
    groups = loaded.sections[0].articles[1]
    assert groups.author == "Editorial team"
    assert groups.image == "https://example.org/images/groups.png"
    assert groups.alt.startswith("Members of a monitoring group")
    rankings = loaded.sections[1].articles[0]
    assert rankings.link == "https://example.org/read-more/index"
    assert rankings.link_text == "Read the full index"
    assert loaded.sections[0].articles[0].link_text == "Read more"  # the default
    assert loaded.warnings == ()


def test_sample_issue_has_44_articles_in_six_sections() -> None:
    loaded = load_issue(SAMPLE_ISSUE)
    assert loaded.meta.number == 25
    assert loaded.meta.date == dt.date(2022, 5, 5)
    assert len(loaded.articles) == 44
    assert [s.title for s in loaded.sections] == [
        "",
        "Uzbekistan and rankings",
        "View point",
        "Trending topics in blogs",
        "New appointments",
        "Success stories of Uzbekistan NGOs",
    ]
    assert sum(1 for a in loaded.articles if a.link) == 4


def test_body_line_points_after_the_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    article = parse_snippet(path, "---\ntitle: T\nauthor: A\n---\nBody\n")
    assert article.body == "Body\n"
    assert article.body_line == 5


def test_crlf_and_bom_are_accepted(issue: Path) -> None:
    path = issue / "appointment.md"
    path.write_bytes(b"\xef\xbb\xbf---\r\ntitle: Windows\r\n---\r\nText\r\n")
    loaded = load_issue(issue)
    assert loaded.sections[2].articles[0].title == "Windows"


def test_number_not_matching_the_folder_warns(issue: Path) -> None:
    manifest = issue / "issue.toml"
    manifest.write_text(manifest.read_text().replace("number = 7", "number = 8"))
    assert "number = 8 but the folder is 007-spring-2022" in load_issue(issue).warnings[0]


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# (what to break, expected message fragment: file and line where known)
BROKEN = {
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


@pytest.mark.parametrize("case", list(BROKEN))
def test_bad_issue_is_one_line_naming_the_file(issue: Path, case: str) -> None:
    breaker, expected = BROKEN[case]
    breaker(issue)
    with pytest.raises(IssueError) as info:
        load_issue(issue)
    message = str(info.value)
    assert expected in message
    assert str(issue) in message
    assert "\n" not in message


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(IssueError, match="no such issue folder"):
        load_issue(tmp_path / "nope")
