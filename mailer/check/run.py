"""``mailer check``: build the issue and run every check; one :class:`Report` of findings.

The order: the files' own checks (every snippet, also when another fails to parse), then
the build (an error it refuses with is a finding at its file and line; the checks of the
built email then do not run, and a note says so), the layout's contrast, the bulk-sender
rules of the config, and optionally SpamAssassin and the links' answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailer.check import links as link_answers
from mailer.check import spam
from mailer.check.contrast import check_contrast
from mailer.check.findings import Finding, Level, Report, error, from_error, warning
from mailer.check.images import check_images
from mailer.check.sending import check_sending
from mailer.check.size import check_size
from mailer.check.source import (
    check_articles,
    check_manifest,
    check_titles,
    read_snippets,
    web_links,
)
from mailer.compose.build import Built, build
from mailer.compose.issue import MANIFEST, Issue, load_issue
from mailer.compose.layout import LAYOUT
from mailer.compose.model import Newsletter
from mailer.config import Config
from mailer.errors import IssueError


@dataclass(frozen=True)
class CheckOptions:
    links: bool = False  # ask every link's server (network)
    spamassassin: bool = True  # score with SpamAssassin when it is installed
    spam_threshold: float = spam.SPAM_THRESHOLD
    config_file: Path | None = None  # the mailer.toml the config came from (for its lines)


# The checks `mailer send` runs before it starts: all but the network and SpamAssassin
# (seconds per run, and it can only warn, which never blocks a send).
SEND_GATE = CheckOptions(links=False, spamassassin=False)


def check_issue(issue_dir: Path, config: Config, options: CheckOptions = SEND_GATE) -> Report:
    manifest = issue_dir / MANIFEST
    articles, found = read_snippets(issue_dir)
    found += check_articles(articles)
    notes: list[str] = []
    issue: Issue | None = None
    try:
        issue = load_issue(issue_dir)
        found += check_manifest(issue)
        found += check_titles(issue)
    except IssueError:
        pass  # the build refuses with the same error, just below
    built = _build(issue_dir, config, found, notes)
    if built is not None:
        found += check_size(built, manifest)
        found += check_images(built.composed, manifest)
    found += check_contrast(config.layouts_dir / LAYOUT)
    found += check_sending(config, options.config_file or config.root / "mailer.toml")
    if options.spamassassin and built is not None:
        scored, note = spam.check_spam(built.composed, config, manifest, options.spam_threshold)
        found += scored
        notes.append(note)
    if options.links:
        found += _link_findings(list(web_links(articles, issue)))
    return Report.of(found, notes)


def _build(issue_dir: Path, config: Config, found: list[Finding], notes: list[str]) -> Built | None:
    """The built issue, or None with the build's refusal added to ``found``."""
    try:
        return build(issue_dir, Newsletter.from_config(config))
    except IssueError as exc:
        refusal = from_error(str(exc), issue_dir)
        # Already found at that line by the files' checks (e.g. an image without alt text)?
        if not any(f.level is Level.ERROR and f.location == refusal.location for f in found):
            found.append(refusal)
        notes.append("the issue does not build: size, images and SpamAssassin not checked")
        return None


def _link_findings(targets: list[tuple[str, Path, int]]) -> list[Finding]:
    answers = link_answers.check_urls(url for url, _, _ in targets)
    found = []
    for url, path, line in targets:
        answer = answers[url]
        if answer.problem:
            make = error if answer.broken else warning
            found.append(make(path, line, f"{url}: {answer.problem}"))
    return found
