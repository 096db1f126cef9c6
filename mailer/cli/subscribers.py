"""`mailer subscribers ...`: the list, by hand or by CSV."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from mailer.cli.app import app, get_config
from mailer.cli.terminal import printable
from mailer.errors import CsvError, InvalidAttribute
from mailer.files import atomic_output, standard_output
from mailer.store.consent import consent_records
from mailer.store.csv_export import export_csv
from mailer.store.csv_import import ImportResult, import_file
from mailer.store.db import Store, open_store
from mailer.store.models import Subscriber, SubscriberStatus
from mailer.store.subscribers import (
    add_subscriber,
    count_by_status,
    forget,
    get_subscriber,
    list_subscribers,
    remove_subscriber,
    set_status,
)

subscribers_app = typer.Typer(help="Manage the subscriber list.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")
EMAIL = typer.Argument(..., help="The address (any letter case).", show_default=False)


@contextmanager
def _store(ctx: typer.Context) -> Iterator[Store]:
    with open_store(get_config(ctx).database_url).guard() as store:
        yield store


def parse_attrs(pairs: list[str]) -> dict[str, str]:
    """``--attr key=value`` options as attributes; InvalidAttribute for one without ``=``."""
    attributes = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise InvalidAttribute(f"--attr {pair!r}: expected key=value")
        attributes[key.strip()] = value
    return attributes


@subscribers_app.command("add")
def add(
    ctx: typer.Context,
    email: str = EMAIL,
    name: str = typer.Option("", "--name", help="Display name."),
    attr: list[str] = typer.Option([], "--attr", help="An attribute key=value (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Add a forgotten address back."),
) -> None:
    """Add an active subscriber."""
    with _store(ctx) as store:
        subscriber = add_subscriber(
            store, email, name=name, attributes=parse_attrs(attr), force=force
        )
    typer.echo(f"added {printable(subscriber.email)}")


@subscribers_app.command("remove")
def remove(
    ctx: typer.Context,
    email: str = EMAIL,
    force: bool = typer.Option(False, "--force", help="Remove even if unsubscribed."),
) -> None:
    """Delete a subscriber (with their history). Prefer `unsubscribe`, or `forget` (GDPR)."""
    with _store(ctx) as store:
        subscriber = remove_subscriber(store, email, force=force)
    typer.echo(f"removed {printable(subscriber.email)}")


@subscribers_app.command("show")
def show(ctx: typer.Context, email: str = EMAIL) -> None:
    """Show one subscriber, their status history and proof of consent."""
    with _store(ctx) as store:
        s = get_subscriber(store, email)
        consents = consent_records(store, s.id)
    # Stored text is printed through printable(): a control character never reaches the
    # terminal raw (an old row, a foreign database, a bounce's reply as the reason).
    typer.echo(f"email:      {printable(s.email)}")
    typer.echo(f"name:       {printable(s.name)}")
    typer.echo(f"status:     {s.status} since {s.status_changed_at:%Y-%m-%d %H:%M} UTC")
    typer.echo(f"            ({_because(s.status_source, s.status_reason)})")
    typer.echo(f"created:    {s.created_at:%Y-%m-%d %H:%M} UTC")
    for key, value in sorted(s.attributes.items()):
        typer.echo(f"{printable(key) + ':':<11} {printable(str(value))}")
    for e in s.events:
        typer.echo(
            f"history:    {e.at:%Y-%m-%d %H:%M} {e.old_status or '-'} -> {e.new_status} "
            f"({_because(e.source, e.reason)})"
        )
    for c in consents:
        where = printable(f"{c.form} from {c.ip}" if c.ip else c.form)
        typer.echo(
            f"consent:    signed up {c.signed_up_at:%Y-%m-%d %H:%M:%S} UTC on {where}, "
            f"confirmed {c.confirmed_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        typer.echo(f"            to the text {c.text_sha256[:16]}…: {printable(c.text)}")


def _because(source: str, reason: str) -> str:
    return printable(f"{source}{': ' + reason if reason else ''}")


@subscribers_app.command("list")
def list_(
    ctx: typer.Context,
    status: SubscriberStatus | None = typer.Option(None, "--status", help="Only this status."),
) -> None:
    """List subscribers: email, status, name (tab-separated)."""
    with _store(ctx) as store:
        for s in list_subscribers(store, status):
            typer.echo(_line(s))


def _line(s: Subscriber) -> str:
    return f"{printable(s.email)}\t{s.status}\t{printable(s.name)}"


@subscribers_app.command("count")
def count(ctx: typer.Context) -> None:
    """Number of subscribers per status."""
    with _store(ctx) as store:
        counts = count_by_status(store)
    for status, n in counts.items():
        typer.echo(f"{status:<13} {n}")
    typer.echo(f"{'total':<13} {sum(counts.values())}")


@subscribers_app.command("import")
def import_(
    ctx: typer.Context,
    file: str = typer.Argument(..., help="CSV file, or - for standard input."),
    rejects: Path | None = typer.Option(
        None, "--rejects", help="Write the skipped rows, with line and reason, to this CSV."
    ),
    resubscribe: bool = typer.Option(
        False, "--resubscribe", help="Make listed unsubscribed/bounced addresses active again."
    ),
    progress: bool = typer.Option(
        False, "--progress", help="Report progress on stderr (default: when it is a terminal)."
    ),
) -> None:
    """Import subscribers from CSV (header: email, optional name, more columns = attributes)."""

    def report(rows: int) -> None:
        typer.echo(f"... {rows} rows", err=True)

    show_progress = progress or sys.stderr.isatty()
    with _store(ctx) as store:
        result = import_file(
            store,
            file,
            rejects=rejects,
            resubscribe=resubscribe,
            progress=report if show_progress else None,
        )
    _summary(result, rejects)


def _summary(result: ImportResult, rejects: Path | None) -> None:
    for reject in result.rejects:
        typer.echo(f"line {reject.line}: {printable(reject.reason)}", err=True)
    if result.rejected > len(result.rejects):
        more = result.rejected - len(result.rejects)
        where = f" (all in {rejects})" if rejects else " (use --rejects FILE to list them all)"
        typer.echo(f"... and {more} more rejected rows{where}", err=True)
    typer.echo(
        f"added {result.added}, updated {result.updated}, unchanged {result.unchanged}, "
        f"rejected {result.rejected}"
        + (f", duplicates merged {result.duplicates}" if result.duplicates else "")
    )
    if result.resubscribed:
        typer.echo(f"resubscribed {result.resubscribed} (logged with source 'import')")
    if result.kept_inactive:
        typer.echo(
            f"{result.kept_inactive} listed addresses stay unsubscribed, bounced or complained "
            "(--resubscribe to reactivate them)"
        )


@subscribers_app.command("export")
def export(
    ctx: typer.Context,
    file: Path | None = typer.Argument(None, help="Output CSV (default: standard output)."),
) -> None:
    """Export every subscriber as CSV (readable by `import`)."""
    with _store(ctx) as store:
        if file is None:
            with standard_output(error=CsvError) as stdout:
                export_csv(store, stdout)
            return
        with atomic_output(file, error=CsvError) as out:  # whole, or not at all
            n = export_csv(store, out)
    typer.echo(f"exported {n} subscribers to {file}")


@subscribers_app.command("unsubscribe")
def unsubscribe(
    ctx: typer.Context,
    email: str = EMAIL,
    reason: str = typer.Option("", "--reason", help="Why (kept in the history)."),
) -> None:
    """Unsubscribe an address (e.g. a request by email)."""
    with _store(ctx) as store:
        s, changed = set_status(store, email, SubscriberStatus.UNSUBSCRIBED, reason=reason)
    shown = printable(s.email)
    typer.echo(f"unsubscribed {shown}" if changed else f"{shown} was already unsubscribed")


@subscribers_app.command("resubscribe")
def resubscribe(
    ctx: typer.Context,
    email: str = EMAIL,
    reason: str = typer.Option("", "--reason", help="Why (kept in the history)."),
) -> None:
    """Make an unsubscribed, bounced or complained address active again (logged)."""
    with _store(ctx) as store:
        s, changed = set_status(store, email, SubscriberStatus.ACTIVE, reason=reason)
    shown = printable(s.email)
    typer.echo(f"resubscribed {shown}" if changed else f"{shown} was already active")


@subscribers_app.command("forget")
def forget_(ctx: typer.Context, email: str = EMAIL) -> None:
    """Erase an address and everything about it (GDPR); block it from future imports."""
    with _store(ctx) as store:
        done = forget(store, email)
    shown = printable(done.email)
    if done.was_subscribed:
        typer.echo(f"forgot {shown}: subscriber, history and deliveries erased")
    else:
        typer.echo(f"{shown} was not on the list; recorded so imports will skip it")
