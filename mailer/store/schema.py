"""Creating, migrating and checking the schema with the Alembic revisions in the package.

Alembic runs programmatically (no ``alembic.ini``): the scripts are found inside the installed
package and the open connection is handed to ``migrations/env.py``, so this works from any
working directory. Every command but ``mailer init`` / ``mailer db upgrade`` refuses a
database whose revision is not this code's head (:func:`check_current`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from mailer.errors import SchemaMismatch
from mailer.store.models import Base
from mailer.store.redact import redacted

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic is imported only when migrating or when the fast check fails (it costs ~0.1 s of
# start-up for every command otherwise).

SCRIPT_LOCATION = "mailer.store:migrations"
# The newest revision in migrations/versions (a test checks they agree): lets every command
# check the schema with one SELECT, without loading Alembic.
HEAD = "0006"


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def head() -> str:
    """The revision this code expects."""
    rev = _scripts().get_current_head()
    assert rev is not None, "no migrations shipped"
    return rev


def revisions() -> list[str]:
    """Every known revision, oldest first."""
    return [s.revision for s in reversed(list(_scripts().walk_revisions()))]


def current(engine: Engine) -> str | None:
    """The database's revision, or None if it has never been migrated."""
    with engine.connect() as conn:
        return _current(conn)


def _current(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _where(engine: Engine) -> str:
    return redacted(engine.url.render_as_string(hide_password=False))


def _check(conn: Connection, where: str, *, for_upgrade: bool) -> str | None:
    """The current revision, after refusing a database newer than the code or not ours."""
    rev = _current(conn)
    if rev is None:
        ours = set(Base.metadata.tables) & set(inspect(conn).get_table_names())
        if ours:
            raise SchemaMismatch(
                f"database {where} has tables ({', '.join(sorted(ours))}) but no mailer "
                "schema version: it was not created by mailer; use an empty database"
            )
        if not for_upgrade:
            raise SchemaMismatch(
                f"database {where} has no mailer schema yet: run `mailer init` or "
                "`mailer db upgrade`"
            )
        return None
    if rev not in revisions():
        raise SchemaMismatch(
            f"database {where} is at schema revision {rev}, newer than this version of "
            f"mailer (which knows up to {head()}): upgrade mailer"
        )
    return rev


def check_current(engine: Engine) -> None:
    """Raise SchemaMismatch unless the database is at this code's schema (head)."""
    with engine.connect() as conn:
        try:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        except DBAPIError:
            conn.rollback()  # no version table: _check explains
            versions = []
        if [tuple(v) for v in versions] == [(HEAD,)]:
            return
        rev = _check(conn, _where(engine), for_upgrade=False)
    if rev != head():
        raise SchemaMismatch(
            f"database {_where(engine)} is at schema revision {rev}; this mailer needs "
            f"{head()}: run `mailer db upgrade`"
        )


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision`` (default: the latest); return (before, after)."""
    with _migrating(engine) as conn:
        from alembic import command

        before = _check(conn, _where(engine), for_upgrade=True)
        command.upgrade(_alembic_config(conn), revision)
        after = _current(conn)
    assert after is not None
    return before, after


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate back to ``revision`` ("base" drops everything): for tests and rollbacks."""
    with _migrating(engine) as conn:
        from alembic import command
        from alembic.util.exc import CommandError

        _check(conn, _where(engine), for_upgrade=True)
        try:
            command.downgrade(_alembic_config(conn), revision)
        except CommandError as exc:
            raise SchemaMismatch(f"cannot downgrade to {revision}: {exc}") from None


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction around the whole migration, so a failure leaves the old schema.

    SQLite: foreign keys are switched off first (batch migrations rebuild tables, and
    dropping a parent table with them on would cascade-delete its children), checked at
    the end, and the write lock is taken up front.
    """
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            with conn.begin():
                yield conn
            return
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
                problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise SchemaMismatch(f"migration broke foreign keys: {problems[:3]}")
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        finally:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def make_revision(engine: Engine, message: str) -> str:
    """For developers: write a new revision from the difference between ``engine``'s
    database (at head) and the models; returns the new file's path. Review it, then bump
    :data:`HEAD`."""
    from alembic import command

    check_current(engine)
    number = f"{len(revisions()) + 1:04d}"
    with engine.connect() as conn:
        script = command.revision(
            _alembic_config(conn), message=message, autogenerate=True, rev_id=number
        )
    assert script is not None and not isinstance(script, list)
    return str(script.path)
