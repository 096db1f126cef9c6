"""Stage 1: Markdown -> HTML fragments and plain text, from one parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.compose.markdown import parse, to_html, to_text, wrap
from mailer.errors import IssueError

SOURCE = """\
A paragraph with *emphasis*, **strong** text and [a link](https://example.org/a?b=1&c=2).
A second line of the same paragraph.

- first bullet
- second bullet with a [link](https://example.org/x)

1. one
2. two

# A heading inside a snippet

<b>raw</b> <script>alert(1)</script>
"""


def test_html_has_lists_links_and_emphasis() -> None:
    html = to_html(parse(SOURCE))
    assert "<em>emphasis</em>" in html
    assert "<strong>strong</strong>" in html
    assert '<a href="https://example.org/a?b=1&amp;c=2">a link</a>' in html
    assert "<ul>\n<li>first bullet</li>" in html
    assert "<ol>\n<li>one</li>" in html


def test_raw_html_is_escaped_not_injected() -> None:
    html = to_html(parse(SOURCE))
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_snippet_headings_sit_below_article_titles() -> None:
    html = to_html(parse(SOURCE))
    assert "<h4>A heading inside a snippet</h4>" in html


def test_javascript_links_are_dropped() -> None:
    html = to_html(parse("[click](javascript:alert(1))"))
    assert "href" not in html  # left as plain text, never a link


def test_text_keeps_bullets_numbers_and_link_urls() -> None:
    text = to_text(parse(SOURCE))
    assert "a link <https://example.org/a?b=1&c=2>" in " ".join(text.split())
    assert "  * first bullet\n  * second bullet with a link <https://example.org/x>" in text
    assert "  1. one\n  2. two" in text
    assert "A HEADING INSIDE A SNIPPET" in text
    assert "<script>alert(1)</script>" in text  # plain text: shown as written
    assert "*emphasis*" not in text and "emphasis" in text


def test_text_wraps_to_78_columns_with_hanging_bullets() -> None:
    long = " ".join(["word"] * 60)
    text = to_text(parse(f"{long}\n\n- {long}\n"))
    lines = text.split("\n")
    assert all(len(line) <= 78 for line in lines)
    bullet = text.split("\n\n")[1].split("\n")
    assert bullet[0].startswith("  * word")
    assert all(line.startswith("    word") for line in bullet[1:])


def test_long_urls_are_never_broken() -> None:
    url = "https://example.org/" + "x" * 90
    text = wrap(f"See {url} now", 78)
    assert url in text.split("\n")


def test_body_image_without_alt_names_file_and_line() -> None:
    with pytest.raises(IssueError, match=r"a\.md:7: image without alt text"):
        parse("Text\n\n![](https://example.org/a.png)\n", Path("a.md"), first_line=5)


def test_relative_links_warn_with_file_and_line() -> None:
    parsed = parse("Intro\n\nSee [the page](/about) and [mail](mailto:a@b.org).\n", Path("a.md"), 4)
    assert parsed.warnings == (
        "a.md:6: '/about' is not an absolute URL: it will not work in an email",
    )
