"""`mailer report` (one issue's delivery counts and problem rows, or every issue's state)
and `mailer status`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mailer.cli.app import app, get_config
from mailer.cli.schedule import print_statuses, schedule_note
from mailer.cli.terminal import printable
from mailer.errors import SendError
from mailer.files import atomic_output
from mailer.store.db import open_store
from mailer.store.ledger import SqlIssues
from mailer.store.report import issue_report, write_report_csv
from mailer.store.schedules import find_schedule

REPORT_ISSUE_DIR = typer.Argument(
    None,
    help="The issue folder; without one, every issue's state (as `mailer status`).",
    show_default=False,
)


@app.command()
def report(
    ctx: typer.Context,
    issue_dir: Path | None = REPORT_ISSUE_DIR,
    csv_file: Path | None = typer.Option(
        None, "--csv", help="Also write the problem rows to this CSV file.", show_default=False
    ),
) -> None:
    """Delivery counts of an issue, and its failed, deferred and bounced recipients."""
    config = get_config(ctx)
    if issue_dir is None:
        if csv_file is not None:
            raise SendError("--csv writes one issue's problem rows: name the issue")
        with open_store(config.database_url).guard() as store:
            print_statuses(store, config.timezone)
        return
    # guard(): a database failure is one line, not a driver traceback with the SQL
    with open_store(config.database_url).guard() as store:
        planned = find_schedule(store, issue_dir.name)
        if planned is not None and SqlIssues(store).find(planned.slug) is None:
            typer.echo(schedule_note(planned, config, in_ledger=False))  # nothing sent yet
            return
        found = issue_report(store, issue_dir.name)
    record, counts, rows = found.record, found.counts, found.problems
    if csv_file is not None:  # first: an unwritable file is the one line printed
        with atomic_output(csv_file, error=SendError) as out:  # whole, or not at all
            write_report_csv(rows, out)
    typer.echo(f"#{record.number} {record.slug}: {record.subject} ({record.state.value})")
    if planned is not None:
        typer.echo(schedule_note(planned, config, in_ledger=True))
    typer.echo("  ".join(f"{status.value} {n}" for status, n in counts.items()))
    typer.echo("  ".join(f"{name} {n} ({rate:.2%})" for name, n, rate in found.rates.rows()))
    for warning in found.rates.warnings():
        typer.echo(f"warning: {warning}")
    if rows:
        table = Table()
        for column in ("email", "delivery", "subscriber", "attempts", "last reply", "bounce"):
            table.add_column(column)
        for row in rows:  # stored text, a remote server's reply among it: printable()
            table.add_row(
                printable(row.email),
                row.delivery_status,
                row.subscriber_status,
                str(row.attempts),
                printable(row.last_reply),
                printable(f"{row.bounce} {row.bounce_status} {row.bounce_reason}".strip()),
            )
        Console(width=200).print(table)
    if csv_file is not None:
        typer.echo(f"wrote {len(rows)} rows to {csv_file}")


@app.command()
def status(ctx: typer.Context) -> None:
    """Scheduled, sending, sent and missed issues, with their times."""
    config = get_config(ctx)
    with open_store(config.database_url).guard() as store:
        print_statuses(store, config.timezone)
