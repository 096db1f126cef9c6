"""`mailer send --at` / `--unschedule`, and what `mailer status` and `mailer report` show of
scheduled sends.

`send --at` composes the issue, checks what a send would check (the transport's config and
the bulk-sender rules) and records the issue as composed with its time; a worker
(`mailer worker`, its ``start_due`` job) starts it then, snapshotting the recipients at
that moment. A second ``--at`` for a scheduled issue is refused: ``--unschedule`` first, so a
time never moves by accident (and what goes out is always what the last ``--at`` composed).
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from mailer.cli.terminal import printable
from mailer.cli.when import show_time
from mailer.compose import ComposedIssue
from mailer.config import Config
from mailer.errors import SendError
from mailer.send.service import media_of
from mailer.send.stored import facts_of
from mailer.store import schedules
from mailer.store.db import Store, open_store
from mailer.store.media import SqlMedia
from mailer.store.models import ScheduleState
from mailer.store.send_status import SendStatus, send_statuses


def schedule_send(config: Config, issue: ComposedIssue, at: datetime, rate: float | None) -> None:
    """Record ``issue`` to go out at ``at`` (:func:`parse_at` judged it in the future when the
    command began; composing may have taken it past since, and then a worker starts it at
    once); returns at once."""
    with open_store(config.database_url).guard() as store:
        record = schedules.schedule_issue(store, facts_of(issue), at, rate=rate, now=at)
        # The worker that starts it has no issue folder: its images are kept now.
        SqlMedia(store).keep(issue.meta.slug, media_of(issue))
    meta = issue.meta
    typer.echo(f"Issue #{meta.number} {meta.slug}: {meta.subject}")
    typer.echo(
        f"Scheduled for {show_time(record.at, config.timezone)}. A running `mailer worker` "
        "starts it then (recipients are taken at that moment)."
    )
    if record.at <= datetime.now(UTC):  # composing took us past it
        typer.echo("Its time has come while it was composed: a running worker starts it now.")
    typer.echo(
        f"Not started within {config.schedule_grace_minutes} minutes of its time (no worker "
        f"running), it is marked missed. `mailer send {meta.slug} --unschedule` cancels it."
    )


def unschedule_send(config: Config, slug: str) -> None:
    with open_store(config.database_url).guard() as store:
        record = schedules.unschedule(store, slug)
    was = "missed send" if record.state is ScheduleState.MISSED else "send"
    typer.echo(
        f"Unscheduled issue #{record.number} {slug}: its {was} for "
        f"{show_time(record.at, config.timezone)} is cancelled; nothing was sent."
    )


def check_not_scheduled(store: Store, slug: str, zone: str) -> None:
    """Before a send by hand: refuse one whose scheduled time is still to come (it would
    pre-empt the schedule); a missed one is the editor's to start, which this is."""
    found = schedules.find_schedule(store, slug)
    if found is None or found.state is ScheduleState.STARTED:
        return
    if found.state is ScheduleState.SCHEDULED:
        raise SendError(
            f"issue {slug} is scheduled for {show_time(found.at, zone)}: wait for it, or "
            f"`mailer send {slug} --unschedule` first to send it now"
        )
    typer.echo(f"Its scheduled send for {show_time(found.at, zone)} was missed; sending by hand.")


def schedule_note(record: schedules.ScheduleRecord, config: Config, *, in_ledger: bool) -> str:
    """`mailer report ISSUE`'s line about the issue's schedule (``in_ledger``: its send has
    started, by a worker or by hand)."""
    when = show_time(record.at, config.timezone)
    if in_ledger:
        if record.state is ScheduleState.STARTED:
            started = _cell(record.started_at, config.timezone)
            return f"scheduled for {when}; started {started} by {printable(record.started_by)}"
        return f"scheduled for {when}; {record.state.value}, then started by hand"
    meta = f"#{record.number} {record.slug}: {record.subject}"
    if record.state is ScheduleState.MISSED:
        return (
            f"{meta} (missed: scheduled for {when}, no worker started it within "
            f"{config.schedule_grace_minutes} minutes; nothing sent. `mailer send "
            f"{record.slug}` sends it now, `--unschedule` drops it)"
        )
    return f"{meta} (scheduled for {when}; not started, nothing sent yet)"


def _cell(at: datetime | None, zone: str) -> str:
    return show_time(at, zone) if at is not None else ""


def print_statuses(store: Store, zone: str) -> None:
    """The table of `mailer status` (and `mailer report` without an issue)."""
    found = send_statuses(store)
    if not found:
        typer.echo("No issue is scheduled or has been sent yet.")
        return
    table = Table()
    for column in ("issue", "state", "scheduled for", "started", "sent", "delivered"):
        table.add_column(column)
    for row in found:
        table.add_row(
            printable(f"#{row.number} {row.slug}"),
            row.state,
            _cell(row.scheduled_for, zone),
            _cell(row.started_at, zone),
            _cell(row.sent_at, zone),
            _delivered(row),
        )
    Console(width=200).print(table)
    missed = [row.slug for row in found if row.state == ScheduleState.MISSED.value]
    for slug in missed:
        typer.echo(
            f"{slug}: missed its time (no worker started it within the grace window); "
            f"`mailer send {slug}` sends it now, `--unschedule` drops it."
        )


def _delivered(row: SendStatus) -> str:
    return f"{row.delivered}/{row.total}" if row.total else ""
