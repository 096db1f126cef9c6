"""The whole pipeline on the sample issue #25: size, accessibility, determinism, goldens."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import html as lxml_html

from mailer.compose import GMAIL_CLIP_BYTES, ComposedIssue, compose_issue
from mailer.compose.build import build, sample_values
from mailer.compose.model import Newsletter
from tests.conftest import REPO, SAMPLE_ISSUE

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("MAILER_UPDATE_GOLDEN") == "1"


def _personalised(composed: ComposedIssue, newsletter: Newsletter) -> tuple[str, str]:
    return composed.personalise(sample_values(newsletter, composed.meta))


def test_sample_html_is_well_under_gmails_clip_limit(
    sample: ComposedIssue, newsletter: Newsletter
) -> None:
    html, text = _personalised(sample, newsletter)
    size = len(html.encode("utf-8"))
    print(f"sample #25: HTML {size:,} bytes, text {len(text.encode()):,} bytes")
    assert size < 90_000 < GMAIL_CLIP_BYTES  # no warning either
    assert sample.warnings == ()
    assert len(sample.web_html.encode("utf-8")) < 90_000


def test_sample_contains_every_article_and_section(
    sample: ComposedIssue, newsletter: Newsletter
) -> None:
    html, text = _personalised(sample, newsletter)
    doc = lxml_html.fromstring(html)
    # Article titles: <h2> in the untitled lead section (18), <h3> under a section's <h2>.
    assert len(doc.xpath("//h2[@class='title' or @class='title sep']")) == 18
    assert len(doc.xpath("//h3[@class='title' or @class='title sep']")) == 26
    assert len(doc.xpath("//h3")) == 26 and len(doc.xpath("//*[contains(@class, 'title')]")) == 44
    assert [h.text_content() for h in doc.xpath("//h2[contains(@class, 'section')]")] == [
        "In this issue",  # the sample's contents list (toc = true)
        "Uzbekistan and rankings",
        "View point",
        "Trending topics in blogs",
        "New appointments",
        "Success stories of Uzbekistan NGOs",
    ]
    masthead = doc.xpath("//h1")[0].text_content()
    assert masthead == "Democracy in Uzbekistan"
    body = " ".join(doc.xpath("//body")[0].text_content().split())
    assert "Newsletter #25" in body and "May 5, 2022" in body
    assert "Bureau of International Narcotics and Law Enforcement Affairs (INL)" in body
    assert len(doc.xpath("//ul/li")) >= 3
    assert len(doc.xpath("//a[starts-with(@href, 'https://example.org/read-more/')]")) == 4
    assert "STUDY TOUR" not in text  # article titles keep their case in the text twin
    assert "UZBEKISTAN AND RANKINGS" in text


def test_accessibility_basics(sample: ComposedIssue, newsletter: Newsletter) -> None:
    html, _ = _personalised(sample, newsletter)
    values = sample_values(newsletter, sample.meta)
    doc = lxml_html.fromstring(html)
    assert re.match(r'<!doctype html>\n<html lang="en"', html)
    assert doc.xpath("string(//title)").strip() == sample.meta.subject
    tables = doc.xpath("//table")
    assert tables and all(t.get("role") == "presentation" for t in tables)
    assert all(img.get("alt") for img in doc.xpath("//img"))
    # The preheader: first thing in the body, hidden.
    first = doc.xpath("//body/*[1]")[0]
    assert "display:none" in first.get("style", "").replace(" ", "")
    preview = first.text_content().strip()
    assert preview.startswith(sample.meta.preheader)
    assert set(preview[len(sample.meta.preheader) :]) <= {"\u034f", "\u200c", "\xa0"}
    # A visible unsubscribe link and the postal address in the body.
    links = doc.xpath("//a[@href=$u]", u=values["unsubscribe_url"])
    assert [a.text_content() for a in links] == ["Unsubscribe"]
    assert doc.xpath("//a[@href=$u]", u=values["web_url"])
    assert newsletter.postal_address in doc.xpath("string(//body)")
    assert newsletter.why_received in doc.xpath("string(//body)")


def test_images_carry_their_alt_text(issue: Path, newsletter: Newsletter) -> None:
    composed = compose_issue(issue, newsletter)
    doc = lxml_html.fromstring(composed.web_html)
    imgs = doc.xpath("//img")
    assert [i.get("alt") for i in imgs] == ["Members of a monitoring group around a table"]
    assert imgs[0].get("src") == "https://example.org/images/groups.png"


def test_no_network_resources_or_scripts(sample: ComposedIssue, newsletter: Newsletter) -> None:
    html, _ = _personalised(sample, newsletter)
    assert "<link" not in html and "@import" not in html and "<script" not in html.lower()
    assert "googleapis" not in html


def test_web_version_has_no_subscriber_data(sample: ComposedIssue, newsletter: Newsletter) -> None:
    web = sample.web_html
    values = sample_values(newsletter, sample.meta)
    assert "%%MAILER_" not in web
    assert "/unsubscribe/" not in web
    for value in values.values():
        assert value not in web
    doc = lxml_html.fromstring(web)
    body = " ".join(doc.xpath("string(//body)").split())
    assert "To unsubscribe, use the link at the bottom of the email" in body
    assert doc.xpath("//a[@href=$u]", u=newsletter.base_url)
    assert newsletter.postal_address in body


def test_text_twin(sample: ComposedIssue, newsletter: Newsletter) -> None:
    _, text = _personalised(sample, newsletter)
    values = sample_values(newsletter, sample.meta)
    lines = text.split("\n")
    too_long = [line for line in lines if len(line) > 78 and not re.fullmatch(r"\S+", line)]
    assert too_long == []
    assert values["unsubscribe_url"] in lines  # on a line of its own
    assert values["web_url"] in lines
    assert "Newsletter #25 | May 5, 2022" in text
    assert newsletter.postal_address in " ".join(text.split())
    assert "  * improvement of the legislation of the Central Asian countries" in text
    assert "Read more: https://example.org/read-more/" in text
    assert "<" not in text.replace("<https://", "")  # no markup leaked


def test_composing_twice_gives_identical_bytes(newsletter: Newsletter) -> None:
    first, second = compose_issue(SAMPLE_ISSUE, newsletter), compose_issue(SAMPLE_ISSUE, newsletter)
    assert first == second


_DIGEST = """
import hashlib, sys
from pathlib import Path
from mailer.config import load_config
from mailer.compose import Newsletter, compose_issue
c = compose_issue(Path(sys.argv[1]), Newsletter.from_config(load_config(sys.argv[2])))
h = hashlib.sha256()
for part in (*c.html.parts, *c.text.parts, c.web_html, c.content_hash):
    h.update(part.encode() + b"\\0")
print(h.hexdigest())
"""


def _digest(composed: ComposedIssue) -> str:
    h = hashlib.sha256()
    for part in (*composed.html.parts, *composed.text.parts, composed.web_html):
        h.update(part.encode() + b"\0")
    h.update(composed.content_hash.encode() + b"\0")
    return h.hexdigest()


@pytest.mark.slow
def test_identical_across_processes_and_hash_seeds(sample: ComposedIssue) -> None:
    digests = set()
    for seed in ("1", "4242"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        env.update(PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST, str(SAMPLE_ISSUE), str(REPO / "mailer.toml")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        digests.add(out.stdout.strip())
    assert digests == {_digest(sample)}


def test_content_hash_covers_snippets_layouts_and_config(
    issue: Path, newsletter: Newsletter, layouts: Path
) -> None:
    newsletter = dataclasses.replace(newsletter, layouts_dir=layouts)
    base = compose_issue(issue, newsletter).content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert compose_issue(issue, newsletter).content_hash == base
    snippet = issue / "appointment.md"
    snippet.write_text(snippet.read_text() + "\nOne more line.\n")
    after_snippet = compose_issue(issue, newsletter).content_hash
    assert after_snippet != base
    (layouts / "newsletter.mjml.j2").write_text((layouts / "newsletter.mjml.j2").read_text() + "\n")
    after_layout = compose_issue(issue, newsletter).content_hash
    assert after_layout != after_snippet
    moved = dataclasses.replace(newsletter, postal_address="1 Other Street")
    assert compose_issue(issue, moved).content_hash != after_layout


@pytest.mark.parametrize("kind", ["html", "txt"])
def test_golden_files(newsletter: Newsletter, kind: str) -> None:
    """The built sample must match tests/compose/golden/ byte for byte.

    After an intended change: MAILER_UPDATE_GOLDEN=1 pytest tests/compose, then review the
    diff of the golden files like any other change.
    """
    built = build(SAMPLE_ISSUE, newsletter)
    actual = built.html if kind == "html" else built.text
    path = GOLDEN / f"{SAMPLE_ISSUE.name}.{kind}"
    if UPDATE:
        path.write_text(actual, encoding="utf-8", newline="\n")
    assert path.is_file(), f"{path} missing: run MAILER_UPDATE_GOLDEN=1 pytest tests/compose"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, (
        f"{path.name} differs from the build; if intended, refresh with "
        "MAILER_UPDATE_GOLDEN=1 pytest tests/compose"
    )
