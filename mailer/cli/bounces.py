"""`mailer bounces [MAILBOX]`: read bounce and complaint reports, heal the list."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from mailer.bounces.ports import Kind
from mailer.cli.app import app, get_config
from mailer.errors import ConfigError, MailerError
from mailer.store.db import open_store

if TYPE_CHECKING:
    from mailer.bounces.process import Summary

# The parsers, flufl.bounce and imaplib load only when `mailer bounces` runs, not with every
# other command.

EX_TEMPFAIL = 75  # sysexits.h: the MTA keeps the message and tries the pipe again later


@app.command()
def bounces(
    ctx: typer.Context,
    mailbox: str | None = typer.Argument(
        None,
        help="A Maildir path, imaps://user@host/INBOX, or - for one message on standard "
        "input (an MTA pipe). Default: the bounce_mailbox setting.",
        show_default=False,
    ),
) -> None:
    """Read bounces and spam complaints; mark dead addresses and complainers (README
    "Bounces"). Each message is handled once and moved, never deleted."""
    if mailbox == "-":
        _from_pipe(ctx)
        return
    config = get_config(ctx)
    spec = mailbox or config.bounce_mailbox
    if not spec:
        raise ConfigError("bounces: give a MAILBOX or set bounce_mailbox")
    from mailer.bounces.job import process

    with open_store(config.database_url).guard() as store:
        summary = process(config, store, spec)
    _print(summary)


def _from_pipe(ctx: typer.Context) -> None:
    """``mailer bounces -``: exit 0 once the report is handled (an unrecognised one kept in
    bounce_unrecognised_dir), 75 on any failure so the MTA retries: never lose a report."""
    try:
        from mailer.bounces.job import process

        config = get_config(ctx)
        with open_store(config.database_url).guard() as store:
            summary = process(config, store, "-")
    except MailerError as exc:
        typer.echo(f"error: {exc} (exit {EX_TEMPFAIL}: the MTA will try again)", err=True)
        raise typer.Exit(EX_TEMPFAIL) from None
    except Exception as exc:  # never a traceback into the MTA's log, never a lost report
        typer.echo(f"error: {type(exc).__name__} (exit {EX_TEMPFAIL})", err=True)
        raise typer.Exit(EX_TEMPFAIL) from None
    kind = next((k for k, n in summary.counts.items() if n), None)
    typer.echo(f"report: {kind.value if kind else 'already processed'}")


def _print(summary: Summary) -> None:
    c = summary.counts
    typer.echo(
        f"{summary.mailbox}: {summary.total} messages: {c[Kind.HARD]} hard, {c[Kind.SOFT]} "
        f"soft, {c[Kind.COMPLAINT]} complaints, {c[Kind.POLICY]} policy, {c[Kind.IGNORED]} "
        f"ignored, {c[Kind.UNRECOGNISED]} unrecognised; {summary.already} already processed"
    )
    if summary.repeats:
        typer.echo(f"{summary.repeats} were about deliveries already counted (not again)")
    changes = ", ".join(f"{n} {status}" for status, n in sorted(summary.status_changes.items()))
    typer.echo(f"subscribers changed: {changes or 'none'}")
    for line in summary.policy:
        typer.echo(f"policy (a delivery problem of the sender, not the subscriber's): {line}")
    if c[Kind.UNRECOGNISED] and summary.mailbox != "standard input":
        typer.echo(
            f"{c[Kind.UNRECOGNISED]} unrecognised: moved to their folder for a person to read"
        )


__all__ = ["EX_TEMPFAIL", "bounces"]
