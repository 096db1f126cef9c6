"""The email's language and direction, its dark colours, and headings that skip no level.

Issue 9, item 16. The browser side (dark mode and right-to-left in Chromium) is in
test_browser.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import pytest
from lxml import html as lxml_html

from mailer.compose import compose_issue, load_issue
from mailer.compose.layout import text_direction
from mailer.compose.markdown import parse_issue
from mailer.compose.model import ComposedIssue, Newsletter
from mailer.compose.pipeline import content_hash
from mailer.config import load_config
from mailer.errors import ConfigError
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("language", "direction"),
    [
        ("en", "ltr"),
        ("de-CH", "ltr"),
        ("zh-Hant-TW", "ltr"),
        ("ar", "rtl"),
        ("ar-EG", "rtl"),
        ("ar-XX", "rtl"),  # a region CLDR does not know: the language decides
        ("he", "rtl"),
        ("iw", "rtl"),  # Hebrew's old code
        ("fa-IR", "rtl"),
        ("ur", "rtl"),
        ("ps", "rtl"),
        ("yi", "rtl"),
        ("ckb", "rtl"),
        ("az-Arab", "rtl"),  # the script decides
        ("az", "ltr"),
        ("tlh", "ltr"),  # a language CLDR does not know: left to right
    ],
)
def test_text_direction_comes_from_the_language(language: str, direction: str) -> None:
    assert text_direction(language) == direction


@pytest.mark.parametrize(("language", "direction"), [("en", "ltr"), ("ar", "rtl"), ("fa", "rtl")])
def test_the_language_sets_html_lang_and_dir(
    issue: Path, newsletter: Newsletter, language: str, direction: str
) -> None:
    composed = compose_issue(issue, dataclasses.replace(newsletter, language=language))
    for page in (composed.html.parts[0], composed.web_html):
        assert page.startswith(f'<!doctype html>\n<html lang="{language}" dir="{direction}" ')
        doc = lxml_html.fromstring(page)
        article = doc.xpath("//div[@role='article']")[0]
        assert (article.get("lang"), article.get("dir")) == (language, direction)
        # Sections and columns lay out in the reading direction (MJML's direction=).
        styles = " ".join(doc.xpath("//td/@style | //div/@style"))
        assert f"direction:{direction}" in styles
        assert f"direction:{'rtl' if direction == 'ltr' else 'ltr'}" not in styles


@pytest.mark.parametrize("value", ["en_US", "english", "e", "en-", "ar rtl", "<en>"])
def test_the_language_setting_is_checked(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_LANGUAGE", value)
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "mailer.toml")
    assert str(info.value).startswith(
        "language: expected a language tag like en, en-GB, de-CH or ar, got "
    )


def test_the_language_default_is_english(config: object) -> None:
    assert getattr(config, "language") == "en"  # noqa: B009 (the session Config)


def test_the_language_is_hashed_only_when_it_is_not_the_default(
    issue: Path, newsletter: Newsletter
) -> None:
    parsed = parse_issue(load_issue(issue))
    base = content_hash(parsed, newsletter)
    assert content_hash(parsed, dataclasses.replace(newsletter, language="en")) == base
    arabic = content_hash(parsed, dataclasses.replace(newsletter, language="ar"))
    german = content_hash(parsed, dataclasses.replace(newsletter, language="de"))
    assert len({base, arabic, german}) == 3


def _styles(composed: ComposedIssue) -> str:
    doc = lxml_html.fromstring(composed.html.parts[0])
    return "\n".join(doc.xpath("//style/text()"))


def test_color_scheme_meta_and_dark_rules_reach_the_email(
    sample: ComposedIssue, issue: Path, newsletter: Newsletter
) -> None:
    page = sample.html.parts[0]
    doc = lxml_html.fromstring(page)
    metas = {m.get("name"): m.get("content") for m in doc.xpath("//head/meta[@name]")}
    assert metas["color-scheme"] == "light dark"
    assert metas["supported-color-schemes"] == "light dark"
    styles = _styles(sample)
    dark = styles[styles.index("@media (prefers-color-scheme: dark)") :]
    assert "!important" in dark  # they must beat the inlined light colours
    # Every class the dark rules select is in the body (the sample has no author line, the
    # small issue has one): no rule is dead.
    selected = set(re.findall(r"\.([a-z][a-z-]*)", dark.split("}\n}")[0]))
    small = lxml_html.fromstring(compose_issue(issue, newsletter).html.parts[0])
    used = {c for d in (doc, small) for value in d.xpath("//body//@class") for c in value.split()}
    assert selected and selected <= used, selected - used


HEADINGS = "//*[self::h1 or self::h2 or self::h3 or self::h4 or self::h5 or self::h6]"


def _levels(page: str) -> list[int]:
    return [int(h.tag[1]) for h in lxml_html.fromstring(page).xpath(HEADINGS)]


def _assert_no_skip(levels: list[int]) -> None:
    assert levels[0] == 1
    for before, after in itertools.pairwise(levels):
        assert after <= before + 1, levels


def test_headings_never_skip_a_level(
    sample: ComposedIssue, issue: Path, newsletter: Newsletter
) -> None:
    _assert_no_skip(_levels(sample.html.parts[0]))
    _assert_no_skip(_levels(sample.web_html))
    # Snippet headings too: under a lead article (h2) and under a section's article (h3).
    for name in ("study-tour.md", "rankings.md"):
        path = issue / name
        path.write_text(path.read_text() + "\n# Background\n\nMore.\n\n## Detail\n\nYet more.\n")
    page = compose_issue(issue, newsletter).html.parts[0]
    levels = _levels(page)
    _assert_no_skip(levels)
    doc = lxml_html.fromstring(page)
    subheads = [(h.tag, h.text_content()) for h in doc.xpath(HEADINGS) if not h.get("class")]
    assert subheads == [
        ("h1", "Democracy in Uzbekistan"),
        ("h3", "Background"),
        ("h4", "Detail"),
        ("h4", "Background"),
        ("h5", "Detail"),
    ]
