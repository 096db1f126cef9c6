"""`mailer send`, `mailer report` and `mailer sink`: thin wrappers over mailer.send."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mailer.cli.app import app, get_config
from mailer.compose import ComposedIssue, compose_issue
from mailer.config import Config
from mailer.errors import SendError
from mailer.send import run as send_run
from mailer.send.message import Recipient
from mailer.send.transport import Transport, transport_from_config
from mailer.store import ledger
from mailer.store.db import Store, open_store
from mailer.store.models import DeliveryStatus
from mailer.store.send_lock import send_lock
from mailer.tokens import new_uid

ISSUE_DIR = typer.Argument(..., help="The issue folder, e.g. issues/025-may-2022.")


@app.command()
def send(
    ctx: typer.Context,
    issue_dir: Path = ISSUE_DIR,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(
        False, "--force", help="Send although the issue changed since its send started."
    ),
    retry: bool = typer.Option(False, "--retry", help="Also retry rows left deferred (4xx)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Render every message and count; connect nowhere."
    ),
    to: str | None = typer.Option(
        None, "--to", help="Send one test copy to this address (not recorded).", show_default=False
    ),
    as_: str | None = typer.Option(
        None, "--as", help="With --to: personalise as this subscriber.", show_default=False
    ),
    rate: str | None = typer.Option(
        None, "--rate", help="At most this many messages, e.g. 100/s, 3000/m, 10000/h."
    ),
    connections: int | None = typer.Option(
        None, "--connections", min=1, max=64, help="Parallel SMTP connections."
    ),
) -> None:
    """Send an issue to every active subscriber (resumes an interrupted send)."""
    config = get_config(ctx)
    issue = compose_issue(issue_dir, config)
    err = Console(stderr=True)
    for warning in issue.warnings:
        err.print(f"warning: {warning}", markup=False)
    # guard(): a database failure is one line, not a driver traceback with the SQL
    with open_store(config.database_url).guard() as store:
        if to:
            if dry_run or retry or force:  # --dry-run must never send, even a test copy
                raise SendError(
                    "--to sends one test copy: it goes without --dry-run/--retry/--force"
                )
            _test_send(store, issue, config, to, as_)
            return
        if as_:
            raise SendError("--as only goes with --to")
        if dry_run:
            _dry_run(store, issue, config, retry)
            return
        transport = transport_from_config(config)
        options = send_run.SendOptions(
            connections=connections or config.connections,
            rate=send_run.parse_rate(rate if rate is not None else config.rate),
            force=force,
            retry=retry,
        )
        with send_lock(store, issue.meta.slug):  # a second run would send every row again
            issues = ledger.SqlIssues(store)
            plan = send_run.plan_send(issues, issue, options)
            _describe(plan, transport.describe())
            if plan.to_send == 0:
                if plan.record is not None:
                    issues.ledger(plan.record.id).finish()
                return
            question = f"Send \u201c{issue.meta.subject}\u201d to {plan.to_send} recipients?"
            _confirm(yes, question)
            summary = _with_progress(issues, issue, config, transport, options, plan.to_send)
        _print_summary(summary, issue_dir)


def _describe(plan: send_run.Plan, transport: str) -> None:
    meta = plan.issue.meta
    typer.echo(f"Issue #{meta.number} {meta.slug}: {meta.subject}")
    if plan.record is None:
        typer.echo(f"First send: {plan.to_send} active subscribers, via {transport}")
        return
    typer.echo(
        f"Resuming: {plan.already_sent} already delivered, {plan.to_send} to send, via {transport}"
    )
    if plan.deferred_left:
        typer.echo(f"{plan.deferred_left} deferred (4xx) rows, out of tries, are left for --retry")
    if plan.to_send == 0:
        typer.echo("Nothing to send.")


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise SendError("no terminal to confirm on: pass --yes to send")
    if not typer.confirm(question, default=False):
        typer.echo("Not sent.")
        raise typer.Exit(1)


def _with_progress(
    issues: ledger.SqlIssues,
    issue: ComposedIssue,
    config: Config,
    transport: Transport,
    options: send_run.SendOptions,
    total: int,
) -> send_run.Summary:
    console = Console(stderr=True)
    columns = (
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        TextColumn(
            "sent {task.fields[sent]} · failed {task.fields[failed]} · deferred "
            "{task.fields[deferred]} · {task.fields[rate]:.0f}/s · ETA"
        ),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("send", total=total, sent=0, failed=0, deferred=0, rate=0.0)

        def update(p: send_run.Progress) -> None:
            bar.update(
                task,
                completed=p.done + p.deferred,
                sent=p.sent,
                failed=p.failed,
                deferred=p.deferred,
                rate=p.rate,
            )

        return send_run.send_issue(issues, issue, config, transport, options, on_progress=update)


def _print_summary(summary: send_run.Summary, issue_dir: Path) -> None:
    p = summary.progress
    typer.echo(f"#{summary.number} {summary.slug}: {summary.subject}")
    table = Table()
    table.add_column("")
    table.add_column("this run", justify="right")
    table.add_column("ledger", justify="right")
    for status, now in (
        (DeliveryStatus.SENT, p.sent),
        (DeliveryStatus.FAILED, p.failed),
        (DeliveryStatus.DEFERRED, p.deferred),
        (DeliveryStatus.SKIPPED, p.skipped),
        (DeliveryStatus.PENDING, None),
    ):
        table.add_row(status.value, "" if now is None else str(now), str(summary.counts[status]))
    Console().print(table)
    rate = f"{p.rate:.0f}/s" if p.elapsed else "-"
    typer.echo(
        f"{p.sent} sent in {p.elapsed:.2f} s ({rate}) via {summary.transport}; "
        f"{summary.already_sent} were delivered by earlier runs; {p.bounced} bounced."
    )
    if summary.finished:
        typer.echo("The issue is sent to everyone on its list.")
    elif summary.counts[DeliveryStatus.DEFERRED]:
        typer.echo(
            f"{summary.counts[DeliveryStatus.DEFERRED]} deferred: run `mailer send "
            f"{issue_dir} --retry` later (see `mailer report {issue_dir}`)."
        )


def _test_send(
    store: Store, issue: ComposedIssue, config: Config, to: str, as_: str | None
) -> None:
    def lookup(email: str) -> Recipient | None:
        found = ledger.find_recipient(store, email)
        return None if found is None else Recipient(found.uid, found.email, found.name)

    chosen = send_run.persona_for_test_send(to, as_, lookup)
    # A made-up reader: its unsubscribe link is valid-looking but unknown (the 404 page).
    persona = chosen or Recipient(new_uid(), to, "")
    transport = transport_from_config(config)
    reply = send_run.send_test(issue, config, transport, to, persona)
    typer.echo(
        f"Test copy of #{issue.meta.number} sent to {to} (personalised as "
        f"{chosen.email if chosen else 'a made-up subscriber'}) via "
        f"{transport.describe()}: {reply}. Not recorded in the ledger."
    )


def _dry_run(store: Store, issue: ComposedIssue, config: Config, retry: bool) -> None:
    record = ledger.find_issue(store, issue.meta.slug)
    below = send_run.SendOptions(retry=retry).deferred_below()

    def rows(after: int, limit: int) -> list[ledger.LedgerRow]:
        if record is None:
            return ledger.active_rows(store, after_id=after, limit=limit)
        return ledger.next_rows(store, record.id, deferred_below=below, after_id=after, limit=limit)

    result = send_run.dry_run(issue, config, rows)
    average = result.total_bytes // result.messages if result.messages else 0
    typer.echo(
        f"Dry run of #{issue.meta.number}: rendered {result.messages} messages "
        f"({result.total_bytes / 1e6:.1f} MB, {average / 1e3:.0f} KB each) in "
        f"{result.seconds:.1f} s; {result.skipped} no longer subscribed; "
        f"{len(result.invalid)} invalid addresses. Nothing was sent or recorded."
    )
    for address in result.invalid:
        typer.echo(f"invalid address: {address}")


@app.command()
def report(
    ctx: typer.Context,
    issue_dir: Path = ISSUE_DIR,
    csv_file: Path | None = typer.Option(
        None, "--csv", help="Also write the problem rows to this CSV file.", show_default=False
    ),
) -> None:
    """Delivery counts of an issue, and its failed, deferred and bounced recipients."""
    config = get_config(ctx)
    # guard(): a database failure is one line, not a driver traceback with the SQL
    with open_store(config.database_url).guard() as store:
        record = ledger.require_issue(store, issue_dir.name)
        counts = ledger.counts(store, record.id)
        rows = ledger.problem_rows(store, record.id)
    if csv_file is not None:  # first: an unwritable file is the one line printed
        try:
            out = csv_file.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise SendError(f"cannot write {csv_file}: {exc.strerror or exc}") from None
        with out:
            ledger.write_report_csv(rows, out)
    typer.echo(f"#{record.number} {record.slug}: {record.subject} ({record.state.value})")
    typer.echo("  ".join(f"{status.value} {n}" for status, n in counts.items()))
    if rows:
        table = Table()
        for column in ("email", "delivery", "subscriber", "attempts", "last reply"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row.email,
                row.delivery_status,
                row.subscriber_status,
                str(row.attempts),
                row.last_reply,
            )
        Console(width=200).print(table)
    if csv_file is not None:
        typer.echo(f"wrote {len(rows)} rows to {csv_file}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def sink(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(1025, "--port", min=0, max=65535, help="Port to listen on."),
    maildir: Path = typer.Option(Path("maildir"), "--maildir", help="Where messages are kept."),
) -> None:
    """A local SMTP server that accepts every message and keeps it in a Maildir (Ctrl-C stops)."""
    from mailer.send.sink import start_sink

    server = start_sink(host, port, maildir)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    typer.echo(
        f"Listening on smtp://{host}:{server.port}; messages are kept in {maildir.resolve()} "
        "(Ctrl-C to stop)"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    typer.echo(f"Stopped; {server.count} messages received.")
