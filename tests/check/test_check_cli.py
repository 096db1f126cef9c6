"""`mailer check` on the sample issue (clean) and on broken copies of it: every finding with
its exact file, line and level, errors first, the exit code, and the GitHub format."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import Result

from tests.check.conftest import ISSUE, edit
from tests.conftest import REPO

Check = Callable[..., Result]
STUDY = f"{ISSUE}/study-tour-usa.md"
MANIFEST = f"{ISSUE}/issue.toml"
LAYOUT = "layouts/newsletter.mjml.j2"
# study-tour-usa.md: front matter on lines 1-3, then one paragraph per line from line 4 with a
# blank line between: line 8 starts "During the visit", line 10 "For example".
VISIT = "During the visit, April 20-27"
EXAMPLE = "For example, meetings were held"


def findings(result: Result) -> list[str]:
    """The finding lines: everything before the notes and the summary."""
    lines = result.stdout.rstrip("\n").split("\n")
    assert lines[-1].startswith(f"{ISSUE}: "), result.stdout  # the summary comes last
    return [line for line in lines[:-1] if not line.startswith("note: ")]


def test_the_sample_issue_is_clean(check: Check) -> None:
    result = check()
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{ISSUE}: 0 errors, 0 warnings\n"


# (what to break, [(location, level, message fragment)] in the order printed)
BROKEN: dict[str, tuple[Callable[[Path], None], list[tuple[str, str, str]]]] = {
    "image without alt text in the body": (
        lambda d: edit(d / STUDY, VISIT, f"![](https://example.org/tour.jpg) {VISIT}"),
        [(f"{STUDY}:8", "error", "image has no alt text")],
    ),
    "image without alt text in the front matter": (
        lambda d: edit(d / STUDY, "\n---\n", "\nimage: https://example.org/tour.jpg\n---\n"),
        [(f"{STUDY}:3", "error", "image without alt text: add 'alt: ...'")],
    ),
    "relative link": (
        lambda d: edit(d / STUDY, EXAMPLE, f"[the report](report.html) {EXAMPLE}"),
        [(f"{STUDY}:10", "error", "'report.html' is a relative link")],
    ),
    "anchor link": (
        lambda d: edit(d / STUDY, EXAMPLE, f"[below](#results) {EXAMPLE}"),
        [(f"{STUDY}:10", "error", "'#results' is a relative link")],
    ),
    "javascript link": (
        lambda d: edit(d / STUDY, EXAMPLE, f"[x](javascript:alert(1)) {EXAMPLE}"),
        [(f"{STUDY}:10", "error", "is a javascript: link")],
    ),
    "data URL": (
        lambda d: edit(d / STUDY, EXAMPLE, f"[x](data:text/html,hi) {EXAMPLE}"),
        [(f"{STUDY}:10", "error", "is a data: URL")],
    ),
    "malformed http URL": (
        lambda d: edit(d / STUDY, EXAMPLE, f"[x](https:/example.org/a) {EXAMPLE}"),
        [(f"{STUDY}:10", "error", "'https:/example.org/a' is not a valid http(s) URL")],
    ),
    "mailto without an address": (
        lambda d: edit(d / STUDY, EXAMPLE, f"[write](mailto:nobody) {EXAMPLE}"),
        [(f"{STUDY}:10", "error", "'mailto:nobody' is not a valid mailto: link")],
    ),
    "TODO on the second line of a paragraph": (
        lambda d: edit(d / STUDY, VISIT, f"Dates to confirm:\nTODO {VISIT}"),
        [(f"{STUDY}:9", "error", "placeholder TODO left in the text")],
    ),
    "TK in a title": (
        lambda d: edit(d / STUDY, "title: Study Tour", "title: TK Study Tour"),
        [(f"{STUDY}:2", "error", "placeholder TK left in the text")],
    ),
    "lorem ipsum in a list": (
        lambda d: edit(d / STUDY, EXAMPLE, f"- Lorem ipsum dolor\n- {EXAMPLE}"),
        [(f"{STUDY}:10", "error", "placeholder lorem ipsum left in the text")],
    ),
    "[link] left in": (
        lambda d: edit(d / STUDY, EXAMPLE, f"See [link]. {EXAMPLE}"),
        [(f"{STUDY}:10", "error", "placeholder [link] left in the text")],
    ),
    "placeholder in the subject": (
        lambda d: edit(d / MANIFEST, 'subject = "Democracy', 'subject = "TODO Democracy'),
        [(f"{MANIFEST}:8", "error", "placeholder TODO left in the text")],
    ),
    "placeholder in the notice": (
        lambda d: edit(d / MANIFEST, "This publication is", "TK This publication is"),
        [(f"{MANIFEST}:12", "error", "placeholder TK left in the text")],
    ),
    "an article listed twice": (
        lambda d: edit(d / MANIFEST, '"monitoring-groups-all-regions",', '"study-tour-usa",'),
        [(f"{MANIFEST}:21", "error", "'study-tour-usa' is listed twice")],
    ),
    "a listed article missing": (
        lambda d: (d / STUDY).unlink(),
        [(f"{MANIFEST}:20", "error", "'study-tour-usa' is listed but")],
    ),
    "the unsubscribe slot missing from the layout": (
        lambda d: edit(d / LAYOUT, "{{ slot('unsubscribe_url') }}", "https://example.org/u"),
        [(LAYOUT, "error", "the email must contain {{ slot('unsubscribe_url') }}")],
    ),
    "the web-version slot missing from the layout": (
        lambda d: edit(d / LAYOUT, "{{ slot('web_url') }}", "https://example.org/web"),
        [(LAYOUT, "error", "the email must contain {{ slot('web_url') }}")],
    ),
    "an empty preheader": (
        lambda d: edit(d / MANIFEST, 'preheader = "Study', 'preheader = ""  # "Study'),
        [(f"{MANIFEST}:9", "error", "preheader must not be empty")],
    ),
    "a number that does not match the folder": (
        lambda d: edit(d / MANIFEST, "number = 25", "number = 26"),
        [(f"{MANIFEST}:6", "warning", "number = 26 but the folder is 025-may-2022")],
    ),
    "a long subject": (
        lambda d: edit(d / MANIFEST, "May 2022", "May 2022, " + "and more news " * 4),
        [(f"{MANIFEST}:8", "warning", "the subject is 94 characters")],
    ),
    "a long preheader": (
        lambda d: edit(d / MANIFEST, "in press freedom", "in press freedom and more"),
        [(f"{MANIFEST}:9", "warning", "the preheader is 119 characters")],
    ),
    "an article without text": (
        lambda d: (d / STUDY).write_text("---\ntitle: Study Tour\n---\n"),
        [(f"{STUDY}:2", "warning", "the article has no text")],
    ),
    "a duplicated title": (
        lambda d: edit(
            d / f"{ISSUE}/monitoring-groups-all-regions.md",
            "title: ",
            "title: Study Tour to the USA to Share Experience in Combating Corruption\n# ",
        ),
        [
            (
                f"{ISSUE}/monitoring-groups-all-regions.md:2",
                "warning",
                "duplicated title: study-tour-usa.md has the same one",
            )
        ],
    ),
    "vague link text": (
        lambda d: edit(d / STUDY, EXAMPLE, f"[Click here!](https://example.org/a) {EXAMPLE}"),
        [(f"{STUDY}:10", "warning", "link text 'Click here!' says nothing out of context")],
    ),
    "vague link_text in the front matter": (
        lambda d: edit(
            d / STUDY, "\n---\n", "\nlink: https://example.org/a\nlink_text: here\n---\n"
        ),
        [(f"{STUDY}:4", "warning", "link text 'here' says nothing out of context")],
    ),
    "low contrast text in the layout": (
        lambda d: edit(d / LAYOUT, 'line-height="1.6" color="#1f2933"', 'color="#999999"'),
        [(f"{LAYOUT}:32", "warning", "text #999999 on #ffffff has contrast 2.85:1")],
    ),
    "low contrast in a style rule": (
        lambda d: edit(d / LAYOUT, ".flow a { color:#0b5fa5; }", ".flow a { color:#8cc4ff; }"),
        [(f"{LAYOUT}:42", "warning", "the rule '.flow a': text #8cc4ff on #ffffff")],
    ),
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_copy_is_reported_at_its_file_and_line(
    check: Check, workdir: Path, name: str
) -> None:
    breaker, expected = BROKEN[name]
    breaker(workdir)
    result = check()
    lines = findings(result)
    assert len(lines) == len(expected), result.stdout
    for line, (location, level, fragment) in zip(lines, expected, strict=True):
        assert line.startswith(f"{location}: {level}: "), result.stdout
        assert fragment in line, result.stdout
    errors = sum(level == "error" for _, level, _ in expected)
    assert result.exit_code == (1 if errors else 0), result.output
    assert "Traceback" not in result.output


def test_errors_come_first_then_warnings_with_a_summary(check: Check, workdir: Path) -> None:
    edit(workdir / STUDY, EXAMPLE, f"[click here](https://example.org/a) {EXAMPLE} TODO")
    edit(workdir / MANIFEST, "in press freedom", "in press freedom and more")
    result = check()
    assert result.exit_code == 1
    assert findings(result) == [
        f"{STUDY}:10: error: placeholder TODO left in the text",
        f"{MANIFEST}:9: warning: the preheader is 119 characters: inboxes show about 110",
        f"{STUDY}:10: warning: link text 'click here' says nothing out of context: "
        "name where the link leads",
    ]
    assert result.stdout.endswith(f"{ISSUE}: 1 error, 2 warnings\n")


def test_every_snippet_is_checked_when_one_does_not_parse(check: Check, workdir: Path) -> None:
    (workdir / f"{ISSUE}/kyrgyz-ambassador.md").write_text("no front matter\n")
    edit(workdir / STUDY, EXAMPLE, f"{EXAMPLE} TODO")
    result = check()
    assert findings(result) == [
        f"{ISSUE}/kyrgyz-ambassador.md:1: error: front matter missing: the file must start "
        "with a '---' line",
        f"{STUDY}:10: error: placeholder TODO left in the text",
    ]
    assert "note: the issue does not build" in result.stdout


@pytest.mark.parametrize("size", [25_000, 40_000])
def test_the_html_size_against_gmails_clipping(check: Check, workdir: Path, size: int) -> None:
    words = " ".join(["word"] * (size // 5))
    with (workdir / STUDY).open("a", encoding="utf-8") as out:
        out.write(f"\n{words}\n")
    result = check()
    (line,) = findings(result)
    if size > 30_000:  # the sample is about 68 KB: now over 102 KB
        assert line.startswith(f"{MANIFEST}: error: the HTML is ")
        assert "Gmail clips it above 102 KB" in line
        assert result.exit_code == 1
    else:
        assert line.startswith(f"{MANIFEST}: warning: the HTML is ")
        assert "close to Gmail's 102 KB clipping limit" in line
        assert result.exit_code == 0


def test_the_bulk_sender_rules_of_a_real_send_are_warnings_at_their_keys(
    check: Check, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_SMTP_URL", "smtp://relay.example.org:587")  # no connection made
    result = check()
    assert result.exit_code == 0, result.output
    lines = findings(result)
    assert lines[0].startswith("mailer.toml: warning: dkim_key_file: DKIM is off")
    assert lines[1].startswith("mailer.toml:14: warning: base_url: http://127.0.0.1:8000 is not")
    assert '`mailer send` refuses this unless bulk_sender_rules = "warn"' in lines[1]
    assert len(lines) == 2, result.stdout


def unescape(text: str) -> str:
    """GitHub's escapes undone (in reverse: %25 last)."""
    for code, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, char)
    return text


def parse_github(line: str) -> tuple[str, dict[str, str], str]:
    """``::level k=v,k=v::message`` -> (level, properties, message), unescaped."""
    assert line.startswith("::"), line
    command, message = line[2:].split("::", 1)
    level, _, props = command.partition(" ")
    pairs = (p.split("=", 1) for p in props.split(",") if p)
    return level, {k: unescape(v) for k, v in pairs}, unescape(message)


def test_the_github_format_parses_back(check: Check, workdir: Path) -> None:
    # A file name with the characters GitHub escapes in a property, a message with % in it.
    odd = workdir / ISSUE / "study-tour-usa.md"
    edit(odd, EXAMPLE, f"[x](https://example.org/100%25,a:b) [here](report,v1.html) {EXAMPLE}")
    result = check("--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.rstrip("\n").split("\n")
    assert lines[-1] == f"{ISSUE}: 1 error, 1 warning"
    parsed = [parse_github(line) for line in lines[:-1]]
    assert parsed == [
        (
            "error",
            {"file": STUDY, "line": "10", "title": "mailer check"},
            "'report,v1.html' is a relative link, which leads nowhere in an email: write the "
            "full https:// URL",
        ),
        (
            "warning",
            {"file": STUDY, "line": "10", "title": "mailer check"},
            "link text 'here' says nothing out of context: name where the link leads",
        ),
    ]


def test_github_escaping_of_properties_and_data() -> None:
    from mailer.check.output import escape_data, escape_property

    assert escape_property("a:b,c%d\r\ne") == "a%3Ab%2Cc%25d%0D%0Ae"
    assert escape_data("a:b,c%d\r\ne") == "a:b,c%25d%0D%0Ae"
    assert unescape(escape_property("100%3A, x")) == "100%3A, x"


def test_the_example_workflow_runs_mailer_check_with_annotations() -> None:
    workflow = yaml.safe_load((REPO / "examples/github/check.yml").read_text(encoding="utf-8"))
    steps = workflow["jobs"]["check"]["steps"]
    script = next(step["run"] for step in steps if step.get("name") == "mailer check")
    assert 'mailer check "$issue" --format github' in script
    assert workflow[True]["pull_request"]["paths"] == ["issues/**", "layouts/**", "mailer.toml"]
    text = (REPO / "examples/github/check.yml").read_text(encoding="utf-8")
    body = "".join(line for line in text.splitlines(True) if not line.startswith("#"))
    assert f"```yaml\n{body}```" in (REPO / "README.md").read_text(encoding="utf-8")  # in step


def test_a_missing_folder_is_one_finding(check: Check, workdir: Path) -> None:
    shutil.rmtree(workdir / ISSUE)
    result = check()
    assert result.exit_code == 1
    assert findings(result) == [f"{ISSUE}: error: no such issue folder"]


def test_the_manifest_is_checked_when_the_layout_breaks_the_build(
    check: Check, workdir: Path
) -> None:
    edit(workdir / LAYOUT, "{{ slot('web_url') }}", "https://example.org/web")
    edit(workdir / MANIFEST, "in press freedom", "in press freedom and more")
    result = check()
    assert result.exit_code == 1
    assert findings(result) == [
        f"{LAYOUT}: error: the email must contain {{{{ slot('web_url') }}}}",
        f"{MANIFEST}:9: warning: the preheader is 119 characters: inboxes show about 110",
    ]
    assert "note: the issue does not build: size, images and SpamAssassin not checked\n" in (
        result.stdout
    )


def test_a_snippet_linked_from_outside_is_refused_and_not_read(check: Check, workdir: Path) -> None:
    outside = workdir / "elsewhere.md"
    outside.write_text("---\ntitle: Secret\n---\nTODO private notes\n", encoding="utf-8")
    (workdir / STUDY).unlink()
    (workdir / STUDY).symlink_to(outside)
    result = check()
    assert result.exit_code == 1
    (line,) = findings(result)
    assert line.startswith(f"{STUDY}: error: a symlink to "), line
    assert "outside the issue folder" in line and "TODO" not in result.stdout
