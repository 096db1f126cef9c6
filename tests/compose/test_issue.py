"""Stage 0: reading an issue folder (manifest + snippets) into the typed model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mailer.compose import load_issue
from mailer.compose.issue import parse_snippet
from mailer.errors import IssueError
from tests.compose.broken import BROKEN
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
