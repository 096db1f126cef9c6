"""`mailer build`, `mailer preview`, `mailer new`: the editor's commands."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import typer

from mailer.cli.app import app, config_file, get_config
from mailer.compose.build import build, report, write_build
from mailer.compose.model import Newsletter
from mailer.compose.scaffold import new_issue
from mailer.config import load_config
from mailer.preview import Preview, PreviewServer

# Help texts: one string per paragraph (the help renderer keeps line breaks as written).
BUILD_HELP = (
    "Compose an issue into index.html and index.txt and report its size.\n\n"
    "The files are personalised as a sample subscriber would get them. The report lists the "
    "sections, the article count, the HTML size against Gmail's 102 KB clipping limit "
    "(a warning above 90 KB), the text size, the images published from the issue folder "
    "(written to media/ beside index.html) and any warnings. On an error nothing is written."
)
PREVIEW_HELP = (
    "Serve the issue on http://127.0.0.1:PORT and rebuild it when a file changes.\n\n"
    "Edits to the issue's snippets or manifest, the layouts or mailer.toml rebuild the "
    "preview and the open page reloads; a build error is shown in the page. Paths: / (the "
    "email), /index.txt (plain text), /web (the web version), /media/NAME (the issue's "
    "images). Stop with Ctrl-C."
)
NEW_HELP = (
    "Scaffold the next numbered issue folder in issues_dir, with one example article.\n\n"
    "The folder is NNN-slug: one more than the highest number there, the slug made from the "
    "subject, dated today. An existing folder is never overwritten."
)


@app.command("build", help=BUILD_HELP)
def build_command(
    ctx: typer.Context,
    issue_dir: Path = typer.Argument(
        ..., help="The issue folder, e.g. issues/025-may-2022.", show_default=False
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for index.html and index.txt (default: out/<issue folder name>).",
        show_default=False,
    ),
) -> None:
    built = build(issue_dir, Newsletter.from_config(get_config(ctx)))
    target = out if out is not None else Path("out") / built.composed.meta.slug
    html_path, text_path = write_build(built, target)
    for line in report(built, issue_dir):
        typer.echo(line)
    typer.echo(f"Wrote {html_path} and {text_path}")


@app.command(help=PREVIEW_HELP)
def preview(
    ctx: typer.Context,
    issue_dir: Path = typer.Argument(..., help="The issue folder to preview.", show_default=False),
    port: int = typer.Option(
        8025, "--port", "-p", min=0, max=65535, help="Port on 127.0.0.1 (0: any free one)."
    ),
) -> None:
    get_config(ctx)  # fail now, with the usual message, if the config is broken
    path = config_file(ctx)

    def notify(state: Preview) -> None:
        stamp = time.strftime("%H:%M:%S")
        status = f"error: {state.error}" if state.error else "built"
        typer.echo(f"[{stamp}] {status}", err=bool(state.error))

    config_path = path if path is not None else Path("mailer.toml")
    state = Preview(
        issue_dir,
        lambda: Newsletter.from_config(load_config(path)),
        extra=[config_path],
        notify=notify,
    )
    server = PreviewServer(state, "127.0.0.1", port)
    state.refresh()
    typer.echo(f"Previewing {issue_dir} at {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


@app.command(help=NEW_HELP)
def new(
    ctx: typer.Context,
    subject: str = typer.Argument(..., help="The new issue's subject line.", show_default=False),
    date: str | None = typer.Option(
        None, "--date", help="Issue date, YYYY-MM-DD (default: today).", show_default=False
    ),
) -> None:
    config = get_config(ctx)
    day = None
    if date is not None:
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            raise typer.BadParameter(
                "expected a date like 2022-05-05", param_hint="--date"
            ) from None
    folder = new_issue(config.issues_dir, subject, day)
    typer.echo(f"Created {folder}/ with issue.toml and first-article.md")
    typer.echo(f"Edit them, then: mailer preview {folder}")
