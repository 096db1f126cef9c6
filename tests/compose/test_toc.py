"""The table of contents (`toc = true`): under the masthead, by section, linking to the web
version's anchors; a numbered list in the text part."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from lxml import html as lxml_html

from mailer.compose import ComposedIssue, compose_issue
from mailer.compose.build import build
from mailer.compose.model import Newsletter
from mailer.errors import IssueError
from mailer.web.urls import issue_path
from tests.conftest import SAMPLE_ISSUE


def manifest_order(issue: Path = SAMPLE_ISSUE) -> list[tuple[str, list[str]]]:
    data = tomllib.loads((issue / "issue.toml").read_text(encoding="utf-8"))
    return [(s["title"], s["articles"]) for s in data["section"]]


def toc_links(page: str) -> list[tuple[str, str]]:
    """(text, href) of every entry of the contents list, in order."""
    doc = lxml_html.fromstring(page)
    return [(a.text_content(), a.get("href")) for a in doc.xpath("//div[@class='toc']//li/a")]


def test_the_sample_lists_its_44_articles_in_reading_order(
    sample: ComposedIssue, newsletter: Newsletter
) -> None:
    slugs = [slug for _, articles in manifest_order() for slug in articles]
    assert len(slugs) == 44
    web = f"{newsletter.base_url}/{issue_path(sample.meta.slug)}"
    links = toc_links(sample.html.parts[0])
    assert [href for _, href in links] == [f"{web}#{slug}" for slug in slugs]
    doc = lxml_html.fromstring(sample.web_html)
    titles = [doc.get_element_by_id(slug).text_content() for slug in slugs]
    assert [text for text, _ in links] == titles
    # The web version links within itself; each anchor once, on its article's title.
    assert [href for _, href in toc_links(sample.web_html)] == [f"#{slug}" for slug in slugs]
    ids = doc.xpath("//@id")
    assert len(ids) == len(set(ids))
    assert all("title" in doc.get_element_by_id(slug).get("class") for slug in slugs)
    # The email itself has no anchors (they do not work in most mail apps).
    assert not lxml_html.fromstring(sample.html.parts[0]).xpath("//*[@id]")


def test_the_list_is_grouped_by_section_under_the_masthead(sample: ComposedIssue) -> None:
    doc = lxml_html.fromstring(sample.html.parts[0])
    (toc,) = doc.xpath("//div[@class='toc']")
    assert toc.xpath("h2")[0].text_content() == "In this issue"
    groups = [p.text_content() for p in toc.xpath("p")]
    assert groups == [title for title, _ in manifest_order() if title]
    lists = toc.xpath("ol")
    assert [len(ol.xpath("li")) for ol in lists] == [len(a) for _, a in manifest_order()]
    starts = [int(ol.get("start")) for ol in lists]
    assert starts == [1, 19, 20, 21, 36, 40]  # numbered on through the sections
    # Before the first article, after the masthead.
    first_title = doc.xpath("//*[contains(@class, 'title')]")[0]
    assert toc.getparent() is first_title.getparent()
    assert toc.getparent().index(toc) < toc.getparent().index(first_title)


def test_the_text_part_numbers_the_articles(sample: ComposedIssue) -> None:
    text = "".join(sample.text.parts)
    start = text.index("In this issue\n-------------\n")
    contents = text[start : text.index("-" * 78, start)]
    numbers = [int(n) for n in re.findall(r"(?m)^\s+(\d+)\. ", contents)]
    assert numbers == list(range(1, 45))
    assert (
        "\nUzbekistan and rankings\n  19. 24 points up in the World Press Freedom Index" in contents
    )
    assert all(len(line) <= 78 for line in contents.split("\n"))


def test_the_sample_with_its_contents_stays_under_90_kb(newsletter: Newsletter) -> None:
    built = build(SAMPLE_ISSUE, newsletter)
    assert "In this issue" in built.html
    assert built.html_bytes < 90_000
    assert not [w for w in built.warnings if w.startswith("HTML is ")]


def test_without_toc_there_is_no_list(issue: Path, newsletter: Newsletter) -> None:
    composed = compose_issue(issue, newsletter)
    assert "In this issue" not in "".join(composed.html.parts + composed.text.parts)
    manifest = issue / "issue.toml"
    manifest.write_text("toc = true\n" + manifest.read_text(encoding="utf-8"), encoding="utf-8")
    composed = compose_issue(issue, newsletter)
    assert len(toc_links(composed.html.parts[0])) == 4
    assert "In this issue" in "".join(composed.text.parts)


def test_toc_must_be_true_or_false(issue: Path, newsletter: Newsletter) -> None:
    manifest = issue / "issue.toml"
    manifest.write_text('toc = "yes"\n' + manifest.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(IssueError) as caught:
        compose_issue(issue, newsletter)
    assert str(caught.value) == f"{manifest}:1: toc must be true or false, got 'yes'"


def test_right_to_left_contents(newsletter: Newsletter) -> None:
    rtl = dataclasses.replace(newsletter, language="fa-IR")
    page = compose_issue(SAMPLE_ISSUE, rtl).html.parts[0]
    lists = lxml_html.fromstring(page).xpath("//div[@class='toc']/ol")
    assert lists and all("padding-right:30px" in ol.get("style") for ol in lists)
