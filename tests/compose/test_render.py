"""Stages 2-4: Jinja layout -> MJML -> HTML -> premailer, and their error reports."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mailer.compose import PERSONAL_FIELDS, compose_issue, slot
from mailer.compose.issue import load_issue
from mailer.compose.layout import LAYOUT, layout_context, render_layout
from mailer.compose.markdown import parse_issue
from mailer.compose.model import Newsletter
from mailer.compose.render import inline_css, render_mjml, strip_web_fonts, validate_mjml
from mailer.errors import IssueError


def _edit(layouts: Path, old: str, new: str) -> Path:
    path = layouts / LAYOUT
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().split("\n"), 1) if needle in line)


def test_layout_renders_mjml_with_escaped_text(issue: Path, newsletter: Newsletter) -> None:
    parsed = parse_issue(load_issue(issue))
    mjml = render_layout(layout_context(parsed, newsletter, web=False), newsletter.layouts_dir)
    assert mjml.lstrip().startswith('<mjml lang="en" dir="ltr">')
    assert '<h2 class="section">Rankings &amp; reports</h2>' in mjml  # autoescaped title
    assert "&lt;script&gt;" in mjml  # snippet text stays text
    assert slot("unsubscribe_url") in mjml


def test_unknown_template_variable_names_layout_and_line(
    issue: Path, newsletter: Newsletter, layouts: Path
) -> None:
    path = _edit(layouts, "{{ issue.subject }}", "{{ issue.subjet }}")
    with pytest.raises(IssueError) as info:
        compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=layouts))
    line = _line_of(path, "issue.subjet")
    assert str(info.value).startswith(f"{path}:{line}: unknown template variable")
    assert "subjet" in str(info.value)


def test_layout_syntax_error_names_line(issue: Path, newsletter: Newsletter, layouts: Path) -> None:
    path = _edit(layouts, "{% endfor %}", "{% endfro %}")
    with pytest.raises(IssueError) as info:
        compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=layouts))
    assert str(info.value).startswith(f"{path}:{_line_of(path, 'endfro')}: layout syntax error")


def test_missing_layout(issue: Path, newsletter: Newsletter, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(IssueError, match=r"empty/newsletter\.mjml\.j2: layout not found"):
        compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=tmp_path / "empty"))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '<mj-column>\n        <mj-text css-class="flow">',
            '<mj-colum>\n        <mj-text css-class="flow">',
            "<mj-colum> is not an MJML element",
        ),
        ("</mj-group>", "", "</mj-section> does not close the open element <mj-group>"),
        (
            "<mj-body background-color",
            "<mj-body><p>loose</p></mj-body><mj-body background-color",
            "<p> is not allowed inside <mj-body>",
        ),
    ],
)
def test_invalid_mjml_is_reported_with_the_layout(
    issue: Path, newsletter: Newsletter, layouts: Path, old: str, new: str, message: str
) -> None:
    path = _edit(layouts, old, new)
    with pytest.raises(IssueError) as info:
        compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=layouts))
    assert str(info.value).startswith(str(path))
    assert f"invalid MJML: {message}" in str(info.value)


def test_validator_accepts_the_shipped_layout_and_rejects_nesting() -> None:
    good = (
        "<mjml><mj-body><mj-section><mj-column><mj-text><p>x</p></mj-text></mj-column>"
        "</mj-section></mj-body></mjml>"
    )
    validate_mjml(good, Path("x.mjml"))
    with pytest.raises(
        IssueError,
        match=r"x\.mjml \(line 1 of its output\): invalid MJML: <mj-text> is not allowed inside "
        "<mj-section>",
    ):
        validate_mjml(
            "<mjml><mj-body><mj-section><mj-text>x</mj-text></mj-section></mj-body></mjml>",
            Path("x.mjml"),
        )
    with pytest.raises(IssueError, match=r"line 2 of its output\): invalid MJML: </mj-body> does"):
        validate_mjml("<mjml><mj-body><mj-section>\n</mj-body></mjml>", Path("x.mjml"))
    with pytest.raises(IssueError, match="<mj-body> is never closed"):
        validate_mjml("<mjml><mj-body>", Path("x.mjml"))


def test_google_fonts_are_never_linked(issue: Path, newsletter: Newsletter, layouts: Path) -> None:
    # mjml-python links Google Fonts for these names; the output must not call Google.
    _edit(
        layouts,
        '<mj-all font-family="Helvetica, Arial, sans-serif" />',
        '<mj-all font-family="Ubuntu, Roboto, Open Sans, sans-serif" />',
    )
    composed = compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=layouts))
    for html in (composed.html.fill(dict.fromkeys(PERSONAL_FIELDS, "x")), composed.web_html):
        assert "googleapis" not in html
        assert "@import" not in html
        assert "<link" not in html
    assert "font-family:Ubuntu, Roboto" in composed.web_html


def test_external_stylesheet_is_refused(issue: Path, newsletter: Newsletter, layouts: Path) -> None:
    path = _edit(
        layouts,
        "<mj-breakpoint",
        '<mj-raw><link rel="stylesheet" href="https://cdn.example.org/x.css"></mj-raw>'
        "<mj-breakpoint",
    )
    with pytest.raises(IssueError, match="links an external stylesheet") as info:
        compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=layouts))
    assert str(info.value).startswith(str(path))


def test_strip_web_fonts_removes_the_mjml_block() -> None:
    html = (
        '<head><!--[if !mso]><!-->\n<link href="https://fonts.googleapis.com/css?family=Ubuntu" '
        'rel="stylesheet" type="text/css">\n<style type="text/css">\n'
        "@import url(https://fonts.googleapis.com/css?family=Ubuntu);\n</style>\n"
        "<!--<![endif]-->\n<title>x</title></head>"
    )
    assert strip_web_fonts(html) == "<head><title>x</title></head>"


def test_premailer_inlines_rules_and_keeps_media_queries() -> None:
    mjml = """<mjml lang="en"><mj-head><mj-style>.flow h3 { color:#123456; }
    @media only screen and (max-width:480px) { .flow { padding-left:18px !important; } }
    </mj-style></mj-head><mj-body><mj-section><mj-column><mj-text css-class="flow">
    <h3>Title</h3></mj-text></mj-column></mj-section></mj-body></mjml>"""
    html = inline_css(render_mjml(mjml, Path("t.mjml")))
    assert re.search(r'<h3 style="[^"]*color:#123456', html)
    assert "@media only screen and (max-width: 480px)" in html
    assert "padding-left: 18px !important" in html
    assert html.startswith("<!doctype html>")


def test_slots_survive_mjml_and_premailer(
    issue: Path, newsletter: Newsletter, layouts: Path
) -> None:
    # Every personal field, in text and in attributes, through MJML and premailer.
    _edit(
        layouts,
        "<p>{{ newsletter.why_received }}</p>",
        "{% if web %}<p>{{ newsletter.why_received }}</p>{% else %}"
        "<p title=\"{{ slot('name') }}\">{{ newsletter.why_received }} Hello {{ slot('name') }}, "
        "sent to <a href=\"mailto:{{ slot('email') }}\">{{ slot('email') }}</a>.</p>{% endif %}",
    )
    composed = compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=layouts))
    assert sorted(set(composed.html.fields)) == sorted(PERSONAL_FIELDS)
    values = {
        "name": 'Zoë <"Q"> & Co',
        "email": "zoe@example.org",
        "unsubscribe_url": "https://n.example.org/unsubscribe/TOKEN_1",
        "web_url": "https://n.example.org/issues/007",
        "preferences_url": "https://n.example.org/preferences/TOKEN_2",
    }
    html, text = composed.personalise(values)
    assert "%%MAILER_" not in html and "%%MAILER_" not in text
    assert 'href="https://n.example.org/unsubscribe/TOKEN_1"' in html
    assert 'href="https://n.example.org/issues/007"' in html
    assert 'title="Zoë &lt;&quot;Q&quot;&gt; &amp; Co"' in html
    assert 'href="mailto:zoe@example.org"' in html
    assert "\nhttps://n.example.org/unsubscribe/TOKEN_1\n" in text
    assert "\nhttps://n.example.org/issues/007\n" in text
    assert 'href="https://n.example.org/preferences/TOKEN_2"' in html
    assert text.endswith("\nhttps://n.example.org/preferences/TOKEN_2\n")


def test_layout_without_unsubscribe_link_is_refused(
    issue: Path, newsletter: Newsletter, layouts: Path
) -> None:
    _edit(layouts, "{{ slot('unsubscribe_url') }}", "#")
    with pytest.raises(
        IssueError, match=r"the email must contain \{\{ slot\('unsubscribe_url'\) \}\}"
    ):
        compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=layouts))


def test_web_version_must_not_use_slots(issue: Path, newsletter: Newsletter, layouts: Path) -> None:
    _edit(layouts, "<p>This is the web version", "<p>{{ slot('name') }} This is the web version")
    with pytest.raises(IssueError, match=r"web version \(web=true\) must not use slot\('name'\)"):
        compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=layouts))


def test_unknown_slot_name_is_a_layout_error(
    issue: Path, newsletter: Newsletter, layouts: Path
) -> None:
    path = _edit(layouts, "{{ slot('web_url') }}", "{{ slot('token') }}")
    with pytest.raises(IssueError) as info:
        compose_issue(issue, dataclasses.replace(newsletter, layouts_dir=layouts))
    assert str(info.value).startswith(f"{path}:{_line_of(path, 'token')}:")
    assert "slot('token') is not a personal field" in str(info.value)
