"""`mailer db upgrade` / `mailer db current`: the database schema."""

from __future__ import annotations

import typer

from mailer.cli.app import app, get_config
from mailer.store.db import open_store
from mailer.store.schema import current, head, make_revision, upgrade

db_app = typer.Typer(help="The subscriber database's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create the database's tables or migrate them to this version's schema."""
    with open_store(get_config(ctx).database_url, check_schema=False).guard() as store:
        typer.echo(describe_upgrade(store.url, *upgrade(store.engine)))


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the database's schema revision and the one this version needs.

    Exits 1 when they differ, so a deploy script can check before starting the sender.
    """
    with open_store(get_config(ctx).database_url, check_schema=False).guard() as store:
        rev = current(store.engine)
    state = "up to date" if rev == head() else "run `mailer db upgrade`"
    typer.echo(f"{store.url}: revision {rev or 'none (empty)'}; code needs {head()} ({state})")
    if rev != head():
        raise typer.Exit(1)


@db_app.command("revision", hidden=True)
def db_revision(ctx: typer.Context, message: str) -> None:
    """(Developers) Write a new migration from the models' changes; review it."""
    with open_store(get_config(ctx).database_url).guard() as store:
        path = make_revision(store.engine, message)
    typer.echo(f"wrote {path}: review it, then set HEAD in mailer/store/schema.py")


def describe_upgrade(url: str, before: str | None, after: str) -> str:
    if before is None:
        return f"created database {url} (schema revision {after})"
    if before == after:
        return f"database {url} is up to date (schema revision {after})"
    return f"migrated database {url} from schema revision {before} to {after}"
