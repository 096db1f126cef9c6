"""`mailer check`: the pre-send checks of an issue, as lines (or GitHub annotations)."""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from mailer.check import CheckOptions, check_issue, github_lines, text_lines
from mailer.check.spam import SPAM_THRESHOLD
from mailer.cli.app import app, config_file, get_config
from mailer.config import config_path

CHECK_HELP = (
    "Build the issue and check it before it is sent: one line per finding, with its file "
    "and line, errors first, then a summary.\n\n"
    "Errors (exit 1; `mailer send` refuses them): HTML over Gmail's 102 KB clipping limit, "
    "an image without alt text, a relative, javascript:, data: or malformed link, a "
    "placeholder left in (TK, TODO, lorem ipsum, [link]), an article listed twice or "
    "missing, a layout without the unsubscribe or web-version slot. Warnings (exit 0): HTML "
    "over 90 KB, a long subject or preheader, an article without text, a duplicated title, "
    "vague link text, low text contrast in the layout, the bulk-sender rules of a real "
    "send, and SpamAssassin's score when it is installed."
)


class Format(enum.StrEnum):
    TEXT = "text"
    GITHUB = "github"


@app.command("check", help=CHECK_HELP)
def check_command(
    ctx: typer.Context,
    issue_dir: Path = typer.Argument(
        ..., help="The issue folder, e.g. issues/025-may-2022.", show_default=False
    ),
    output: Format = typer.Option(
        Format.TEXT, "--format", help="text, or github: GitHub Actions annotations."
    ),
    links: bool = typer.Option(
        False, "--links", help="Also ask every link's server whether it answers (network)."
    ),
    spamassassin: bool = typer.Option(
        True,
        "--spamassassin/--no-spamassassin",
        help="Score the message with SpamAssassin's local rules when it is installed.",
    ),
    spam_threshold: float = typer.Option(
        SPAM_THRESHOLD, "--spam-threshold", help="Warn above this SpamAssassin score."
    ),
) -> None:
    config = get_config(ctx)
    options = CheckOptions(
        links=links,
        spamassassin=spamassassin,
        spam_threshold=spam_threshold,
        config_file=config_path(config_file(ctx)),
    )
    report = check_issue(issue_dir, config, options)
    lines = github_lines if output is Format.GITHUB else text_lines
    for line in lines(report, str(issue_dir)):
        typer.echo(line)
    if report.errors:
        raise typer.Exit(1)
