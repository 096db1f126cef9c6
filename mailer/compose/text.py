"""Stage 5: the plain-text twin, written from the parsed snippets (never scraped from HTML).

Masthead, notice, sections (underlined headings), articles (bullets, link URLs in <...>,
"Read more: URL"), then the footer with the unsubscribe and preferences URLs on lines of
their own. Every line
fits in 78 columns except a single URL longer than that, which is never broken.
"""

from __future__ import annotations

from mailer.compose.layout import date_text
from mailer.compose.markdown import ParsedIssue, to_text, wrap
from mailer.compose.model import Newsletter, slot

WIDTH = 78


def _underline(title: str, char: str) -> str:
    wrapped = wrap(title, WIDTH)
    return wrapped + "\n" + char * max(len(line) for line in wrapped.split("\n"))


def _contents(parsed: ParsedIssue) -> str:
    """``toc = true``: the articles numbered in reading order, under their sections' titles."""
    total = len(parsed.issue.articles)
    digits = len(str(total))
    lines = [_underline("In this issue", "-")]
    number = 0
    for section in parsed.issue.sections:
        if section.title:
            lines += ["", wrap(section.title, WIDTH)]
        for article in section.articles:
            number += 1
            marker = f"{number:>{digits}}. "
            lines.append(wrap(article.title, WIDTH, " " * (2 + len(marker)), "  " + marker))
    return "\n".join(lines)


def render_text(parsed: ParsedIssue, newsletter: Newsletter) -> str:
    issue = parsed.issue
    blocks: list[str] = [_underline(newsletter.name, "=")]
    if newsletter.tagline:
        blocks[-1] += "\n" + wrap(newsletter.tagline, WIDTH)
    blocks[-1] += f"\nNewsletter #{issue.meta.number} | {date_text(issue.meta.date)}"
    blocks.append("View this issue in your browser:\n" + slot("web_url"))
    if parsed.notice:
        blocks.append(to_text(parsed.notice, WIDTH))
    if issue.toc:
        blocks.append(_contents(parsed))
    for section in issue.sections:
        if section.title:
            rule = "=" * WIDTH
            blocks.append(f"{rule}\n{wrap(section.title.upper(), WIDTH)}\n{rule}")
        else:
            blocks.append("-" * WIDTH)
        for article in section.articles:
            head = _underline(article.title, "-")
            if article.author:
                head += "\n" + wrap(f"By {article.author}", WIDTH)
            blocks.append(head)
            body = to_text(parsed.bodies[article.slug], WIDTH)
            if body:
                blocks.append(body)
            if article.link:
                blocks.append(wrap(f"{article.link_text}: {article.link}", WIDTH))
    footer = [line for line in (newsletter.copyright, newsletter.postal_address) if line]
    blocks.append("-" * WIDTH + "\n" + wrap(" | ".join(footer), WIDTH))
    if newsletter.why_received:
        blocks.append(wrap(newsletter.why_received, WIDTH))
    blocks.append("Unsubscribe:\n" + slot("unsubscribe_url"))
    blocks.append("Change your name or unsubscribe:\n" + slot("preferences_url"))
    return "\n\n".join(blocks) + "\n"
