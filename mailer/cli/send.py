"""`mailer send` and `mailer sink`: thin wrappers over mailer.send (`mailer report`: report.py)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

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

from mailer.check import SEND_GATE, check_issue
from mailer.cli.app import app, get_config
from mailer.cli.schedule import (
    check_not_scheduled,
    schedule_send,
    unschedule_send,
)
from mailer.cli.when import parse_at
from mailer.compose import ComposedIssue, compose_issue
from mailer.compose.model import Newsletter
from mailer.config import MAX_CONNECTIONS, Config, parse_rate
from mailer.errors import LeaseLost, SendError
from mailer.send import readiness
from mailer.send.ports import DeliveryStatus, Joined
from mailer.send.readiness import Level
from mailer.send.run import OnProgress, SendOptions
from mailer.send.run import Progress as RunProgress
from mailer.send.service import Plan, SendService, Summary
from mailer.store.claims import SqlClaims, cooperating
from mailer.store.db import Store, open_store
from mailer.store.ledger import SqlIssues, SqlSubscriberLookup
from mailer.store.media import SqlMedia
from mailer.store.send_lock import send_lock

T = TypeVar("T")

ISSUE_DIR = typer.Argument(..., help="The issue folder, e.g. issues/025-may-2022.")


@app.command()
def send(
    ctx: typer.Context,
    issue_dir: Path = ISSUE_DIR,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(
        False, "--force", help="Send although the issue changed since its send started."
    ),
    skip_checks: bool = typer.Option(
        False, "--skip-checks", help="Send although `mailer check` finds errors in the issue."
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
        None, "--connections", min=1, max=MAX_CONNECTIONS, help="Parallel SMTP connections."
    ),
    at: str | None = typer.Option(
        None,
        "--at",
        help="Schedule the send for this time, e.g. 2026-12-05T09:00+05:00 (no offset: the "
        "timezone setting's); a `mailer worker` starts it then.",
        show_default=False,
    ),
    unschedule: bool = typer.Option(
        False, "--unschedule", help="Cancel the issue's scheduled send (if not started yet)."
    ),
) -> None:
    """Send an issue to every active subscriber (resumes an interrupted send)."""
    config = get_config(ctx)
    if unschedule:
        if at is not None or to or as_ or dry_run or retry or force:
            raise SendError("--unschedule goes alone (no --at, --to, --dry-run, --retry, --force)")
        unschedule_send(config, issue_dir.name)
        return
    if at is not None and (to or as_ or dry_run or retry or force or connections):
        raise SendError(
            "--at schedules the whole send: it goes without --to, --dry-run, --retry, --force "
            "and --connections (the worker's `connections` setting applies)"
        )
    when = parse_at(at, config.timezone) if at is not None else None  # past: judged now
    issue = compose_issue(issue_dir, Newsletter.from_config(config))
    err = Console(stderr=True)
    for warning in issue.warnings:
        err.print(f"warning: {warning}", markup=False)
    # guard(): a database failure is one line, not a driver traceback with the SQL
    with open_store(config.database_url).guard() as store:
        service = SendService(
            SqlIssues(store), SqlSubscriberLookup(store), config, media=SqlMedia(store)
        )
        if to:
            if dry_run or retry or force:  # --dry-run must never send, even a test copy
                raise SendError(
                    "--to sends one test copy: it goes without --dry-run/--retry/--force"
                )
            _test_copy(service, issue, to, as_)
            return
        if as_:
            raise SendError("--as only goes with --to")
        if dry_run:
            _dry_run(service, issue, retry)
            for finding in readiness.findings(config):
                prefix = "refused at send" if finding.level is Level.ERROR else "warning"
                err.print(f"{prefix}: {finding}", markup=False)
            gate = _checks_refusal(issue_dir, config)
            if gate is not None:
                typer.echo(f"refused at send: {gate}", err=True)  # one line, never wrapped
            return
        via = service.transport.describe()  # first: a transport config error is the one line
        warnings, refusal = readiness.check(config)  # the bulk-sender rules, before anything
        for finding in warnings:
            err.print(f"warning: {finding}", markup=False)
        if refusal is not None:
            raise refusal
        gate = None if skip_checks else _checks_refusal(issue_dir, config)
        if gate is not None:
            raise SendError(f"not sent: {gate}")
        if when is not None:
            schedule_send(config, issue, when, parse_rate(rate) if rate is not None else None)
            return
        check_not_scheduled(store, issue.meta.slug, config.timezone)
        options = SendOptions(
            connections=connections or config.connections,
            rate=parse_rate(rate if rate is not None else config.rate),
            force=force,
            retry=retry,
        )
        summary = _send_to_everyone(store, service, issue, options, via, yes)
    if summary is not None:
        _print_summary(summary, issue_dir)


def _checks_refusal(issue_dir: Path, config: Config) -> str | None:
    """Why the pre-send checks refuse the send (their errors), or None; warnings never do."""
    report = check_issue(issue_dir, config, SEND_GATE)
    if not report.errors:
        return None
    count = len(report.errors)
    return (
        f"`mailer check {issue_dir}` finds {count} error{'s' if count > 1 else ''} "
        f"({report.errors[0]}{'; ...' if count > 1 else ''}): run it for details, fix them, "
        "or pass --skip-checks to send anyway"
    )


def _test_copy(service: SendService, issue: ComposedIssue, to: str, as_: str | None) -> None:
    sent = service.test_copy(issue, to, as_)
    typer.echo(
        f"Test copy of #{issue.meta.number} sent to {to} (personalised as "
        f"{sent.persona.email if sent.persona else 'a made-up subscriber'}) via "
        f"{service.transport.describe()}: {sent.reply}. Not recorded in the ledger."
    )


def _dry_run(service: SendService, issue: ComposedIssue, retry: bool) -> None:
    result = service.dry_run(issue, retry=retry)
    average = result.total_bytes // result.messages if result.messages else 0
    typer.echo(
        f"Dry run of #{issue.meta.number}: rendered {result.messages} messages "
        f"({result.total_bytes / 1e6:.1f} MB, {average / 1e3:.0f} KB each) in "
        f"{result.seconds:.1f} s; {result.skipped} no longer subscribed; "
        f"{len(result.invalid)} invalid addresses. Nothing was sent or recorded."
    )
    for address in result.invalid:
        typer.echo(f"invalid address: {address}")


def _send_to_everyone(
    store: Store,
    service: SendService,
    issue: ComposedIssue,
    options: SendOptions,
    via: str,
    yes: bool,
) -> Summary | None:
    """The real send: on PostgreSQL together with every other run of the issue (claims), on
    SQLite under the issue's lock; None when there was nothing to send."""
    if cooperating(store):
        return _send_together(store, service, issue, options, via, yes)
    with send_lock(store, issue.meta.slug) as lease:  # a second run would send it all again
        plan = _planned(service, issue, options, via, yes)
        if plan is None:
            return None
        return _with_progress(
            plan.to_send,
            lambda update: service.send(issue, options, on_progress=update, lease=lease),
        )


def _planned(
    service: SendService, issue: ComposedIssue, options: SendOptions, via: str, yes: bool
) -> Plan | None:
    """Describe the send and confirm it; None when there is nothing to send."""
    plan = service.plan(issue, options)
    _describe(plan, via)
    if plan.to_send == 0:
        service.settle(plan)
        return None
    question = f"Send \u201c{issue.meta.subject}\u201d to {plan.to_send} recipients?"
    _confirm(yes, question)
    return plan


def _send_together(
    store: Store,
    service: SendService,
    issue: ComposedIssue,
    options: SendOptions,
    via: str,
    yes: bool,
) -> Summary | None:
    plan = _planned(service, issue, options, via, yes)
    if plan is None:
        return None
    claims = SqlClaims(store, service.config.send_lease_seconds)

    def joined(part: Joined) -> None:
        if part.differs:
            typer.echo(
                "warning: this folder's issue differs from the one being sent; the run that "
                "started the send decided (--force applies only when no other run is sending)",
                err=True,
            )
        if part.others:
            lease = service.config.send_lease_seconds
            typer.echo(
                f"Joined {part.others} other sender(s) of this issue, sending its stored "
                f"version (the rows of one that died are taken over within {lease:g} s)"
            )

    def lost(exc: LeaseLost) -> None:
        typer.echo(f"warning: {exc}; claiming again", err=True)

    summary = _with_progress(
        plan.to_send,
        lambda update: service.join(
            claims,
            issue.meta.slug,
            options,
            issue=issue,
            on_progress=update,
            on_join=joined,
            on_lost=lost,
        ),
    )
    if summary is None:  # cannot happen with an issue given: it is recorded by the join
        raise SendError(f"issue {issue.meta.slug} could not be started")
    return summary


def _describe(plan: Plan, transport: str) -> None:
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


def _with_progress(total: int, send: Callable[[OnProgress], T]) -> T:
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

        def update(p: RunProgress) -> None:
            bar.update(
                task,
                completed=p.done + p.deferred,
                sent=p.sent,
                failed=p.failed,
                deferred=p.deferred,
                rate=p.rate,
            )

        return send(update)


def _print_summary(summary: Summary, issue_dir: Path) -> None:
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
