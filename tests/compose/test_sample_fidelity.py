"""The sample issue (issues/025-may-2022) reproduces the reference newsletter word for word.

Independent of the renderer: issue.toml is read with tomllib, front matter with PyYAML, and
each body is parsed with markdown-it-py (CommonMark) into paragraphs and list items, so a
Markdown accident (a line turned into a heading, an ordered list or emphasis) shows up as a
difference from the seed's text.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[2]
ISSUE = REPO / "issues" / "025-may-2022"
SEED_NAME = "000_86c91ca74850ba8e.txt"
SEED_CANDIDATES = [
    REPO.parent / "shared" / "seeds" / SEED_NAME,  # CI: shared/ beside the clone
    Path("/work/shared/seeds") / SEED_NAME,  # a helper's worktree on the dev machine
]
SECTION_TITLES = [
    "",
    "Uzbekistan and rankings",
    "View point",
    "Trending topics in blogs",
    "New appointments",
    "Success stories of Uzbekistan NGOs",
]
FRONT_MATTER_KEYS = {"title", "link", "link_text", "image", "alt", "author"}
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PLACEHOLDER = "https://example.org/read-more/{slug}"

Block = tuple[str, str]  # ("p" | "li", whitespace-normalised text)


def norm(text: str) -> str:
    """Collapse every run of whitespace (NBSP included) to one space."""
    return " ".join(text.split())


# --- The seed --------------------------------------------------------------------------------


@dataclass
class SeedArticle:
    title: str
    blocks: list[Block] = field(default_factory=list)
    read_more: bool = False


@dataclass
class Seed:
    masthead: list[str]  # non-empty lines before the notice
    notice: str
    sections: list[tuple[str, list[SeedArticle]]]
    footer: str


def find_seed() -> Path:
    for path in SEED_CANDIDATES:
        if path.is_file():
            return path
    pytest.skip(
        f"reference newsletter {SEED_NAME} not found in {[str(p) for p in SEED_CANDIDATES]}"
    )


def parse_seed(text: str) -> Seed:
    """Split the seed: an article title is a line followed by two blank lines."""
    lines = text.split("\n")
    is_title = [
        bool(line.strip()) and lines[i + 1 : i + 3] == ["", ""] for i, line in enumerate(lines)
    ]
    dateline = next(i for i, line in enumerate(lines) if "Newsletter #" in line)
    first = is_title.index(True, dateline)
    footer_at = next(i for i, line in enumerate(lines) if line.startswith("\N{COPYRIGHT SIGN}"))
    masthead = [norm(line) for line in lines[: dateline + 1] if line.strip()]
    sections: list[tuple[str, list[SeedArticle]]] = [("", [])]
    for i in range(first, footer_at):
        line = norm(lines[i])
        if not line:
            continue
        if line in SECTION_TITLES:
            sections.append((line, []))
        elif is_title[i]:
            sections[-1][1].append(SeedArticle(line))
        elif line == "Read more":
            sections[-1][1][-1].read_more = True
        elif line.startswith("\N{BULLET} "):
            sections[-1][1][-1].blocks.append(("li", line[2:]))
        else:
            sections[-1][1][-1].blocks.append(("p", line))
    return Seed(
        masthead=masthead,
        notice=norm(" ".join(lines[dateline + 1 : first])),
        sections=sections,
        footer=norm(" ".join(lines[footer_at:])),
    )


@pytest.fixture(scope="module")
def seed() -> Seed:
    return parse_seed(find_seed().read_text(encoding="utf-8"))


# --- The issue folder ------------------------------------------------------------------------


@dataclass
class Article:
    slug: str
    meta: dict[str, Any]
    body: str
    front_matter_text: str


def read_article(path: Path) -> Article:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n"), f"{path.name}: no front matter"
    front, sep, body = text[4:].partition("\n---\n")
    assert sep, f"{path.name}: front matter not closed by ---"
    meta = yaml.safe_load(front)
    assert isinstance(meta, dict), f"{path.name}: front matter is not a mapping"
    return Article(path.stem, meta, body, front)


def body_blocks(article: Article) -> list[Block]:
    """Paragraphs and bullet items as plain text; any other Markdown construct fails."""
    blocks: list[Block] = []
    kind = "p"
    allowed = {"paragraph_open", "paragraph_close", "bullet_list_open", "bullet_list_close"}
    for token in MarkdownIt("commonmark").parse(article.body):
        if token.type == "list_item_open":
            kind = "li"
        elif token.type == "list_item_close":
            kind = "p"
        elif token.type == "inline":
            parts = []
            for child in token.children or []:
                assert child.type in {"text", "softbreak"}, (
                    f"{article.slug}.md: unexpected Markdown {child.type!r} in {token.content!r}"
                )
                parts.append(child.content if child.type == "text" else " ")
            blocks.append((kind, norm("".join(parts))))
        else:
            assert token.type in allowed, (
                f"{article.slug}.md: unexpected Markdown {token.type!r} at line "
                f"{(token.map or [0])[0] + 1} of the body"
            )
    return blocks


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    with (ISSUE / "issue.toml").open("rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def articles() -> dict[str, Article]:
    return {path.stem: read_article(path) for path in sorted(ISSUE.glob("*.md"))}


# --- Tests -----------------------------------------------------------------------------------


def test_manifest_lists_every_article_once(
    manifest: dict[str, Any], articles: dict[str, Article]
) -> None:
    assert manifest["number"] == 25
    assert manifest["date"] == dt.date(2022, 5, 5)
    assert manifest["subject"].strip()
    assert 0 < len(manifest["preheader"]) <= 110
    assert [s["title"] for s in manifest["section"]] == SECTION_TITLES
    listed = [slug for s in manifest["section"] for slug in s["articles"]]
    assert len(listed) == 44
    assert len(set(listed)) == len(listed), "an article is listed twice"
    assert set(listed) == set(articles), "listed articles and *.md files differ"
    for slug in listed:
        assert SLUG.match(slug), f"slug {slug!r} is not lowercase-hyphenated"


def test_front_matter(articles: dict[str, Article]) -> None:
    for slug, article in articles.items():
        meta = article.meta
        assert set(meta) <= FRONT_MATTER_KEYS, (
            f"{slug}.md: unknown keys {set(meta) - FRONT_MATTER_KEYS}"
        )
        assert isinstance(meta.get("title"), str) and meta["title"] == meta["title"].strip(), slug
        if "image" in meta:
            assert meta.get("alt"), f"{slug}.md: image without alt"


def test_sections_and_titles_follow_the_seed(
    seed: Seed, manifest: dict[str, Any], articles: dict[str, Article]
) -> None:
    assert [title for title, _ in seed.sections] == SECTION_TITLES
    assert sum(len(items) for _, items in seed.sections) == 44
    for (seed_title, seed_articles), section in zip(
        seed.sections, manifest["section"], strict=True
    ):
        assert section["title"] == seed_title
        titles = [articles[slug].meta["title"] for slug in section["articles"]]
        assert titles == [a.title for a in seed_articles], f"section {seed_title!r}"


def test_every_seed_line_is_in_the_issue(
    seed: Seed, manifest: dict[str, Any], articles: dict[str, Article]
) -> None:
    """Each article's paragraphs and bullets equal the seed's, in order, as real list items."""
    seed_articles = [a for _, items in seed.sections for a in items]
    slugs = [slug for s in manifest["section"] for slug in s["articles"]]
    for seed_article, slug in zip(seed_articles, slugs, strict=True):
        assert body_blocks(articles[slug]) == seed_article.blocks, f"{slug}.md"
    # And as a whole: every non-empty seed line between notice and footer is somewhere.
    issue_text = {norm(a.meta["title"]) for a in articles.values()}
    issue_text |= {text for a in articles.values() for _, text in body_blocks(a)}
    issue_text |= set(SECTION_TITLES) | {"Read more"}
    for a in seed_articles:
        for _, text in [("p", a.title), *a.blocks]:
            assert text in issue_text, f"seed line missing from the issue: {text[:80]!r}"


def test_read_more_links_are_marked_placeholders(
    seed: Seed, manifest: dict[str, Any], articles: dict[str, Article]
) -> None:
    seed_articles = [a for _, items in seed.sections for a in items]
    slugs = [slug for s in manifest["section"] for slug in s["articles"]]
    with_link = [slug for slug in slugs if "link" in articles[slug].meta]
    assert with_link == [s for s, a in zip(slugs, seed_articles, strict=True) if a.read_more]
    assert len(with_link) == 4
    for slug in with_link:
        assert articles[slug].meta["link"] == PLACEHOLDER.format(slug=slug)
        assert "placeholder" in articles[slug].front_matter_text, f"{slug}.md: unmarked link"
        assert articles[slug].meta.get("link_text", "Read more") == "Read more"
    for slug, article in articles.items():
        lines = [line.strip() for line in article.body.splitlines()]
        assert "Read more" not in lines, f"{slug}.md: 'Read more' left in the body"


def test_masthead_notice_and_footer_come_from_the_seed(
    seed: Seed, manifest: dict[str, Any]
) -> None:
    notice = MarkdownIt("commonmark").parse(manifest["notice"])
    assert [t.type for t in notice] == ["paragraph_open", "inline", "paragraph_close"]
    assert norm(notice[1].content) == seed.notice
    date = manifest["date"]
    dateline = f"Newsletter #{manifest['number']} {date:%B} {date.day}, {date.year}"
    assert norm(seed.masthead[-1]) == dateline
    with (REPO / "mailer.toml").open("rb") as f:
        config = tomllib.load(f)
    assert config["name"] in seed.masthead
    assert config["tagline"] in seed.masthead
    for key in ("copyright", "postal_address", "why_received"):
        assert norm(config[key]) in seed.footer, f"mailer.toml {key} differs from the seed"
