"""Opening the database: one engine per process, tuned per backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from mailer.errors import DatabaseUnavailable
from mailer.store.redact import redacted
from mailer.store.schema import check_current

# How long a writer waits for another's lock (e.g. a running import's) before giving up:
# SQLite's busy timeout ("database is locked"); PostgreSQL's lock_timeout where a request
# must not wait forever (the web app then answers 503 + Retry-After).
LOCK_WAIT_MS = 10_000


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(f"database_url: cannot parse {redacted(url)}") from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    try:
        return create_engine(parsed, **kwargs)
    except ImportError as exc:
        raise DatabaseUnavailable(f"database_url: no driver for {redacted(url)}: {exc}") from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (the web app) never block the sender; NORMAL is durable against a killed
    # process (not a power cut), which is what the ledger's crash safety relies on.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={LOCK_WAIT_MS:d}")
    cursor.close()


class Store:
    """An open database: the engine plus a session factory.

    Use ``with store.session() as s, s.begin(): ...`` for a unit of work; the engine is shared
    by all threads of the process.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session = sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        return redacted(self.engine.url.render_as_string(hide_password=False))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def errors(self) -> Iterator[Store]:
        """As :meth:`guard`, but the store stays open: for a long-running process that
        retries when the database is back."""
        try:
            yield self
        except SQLAlchemyError as exc:  # also the pool's timeout, not only the driver's errors
            cause = getattr(exc, "orig", None) or exc
            raise DatabaseUnavailable(f"database {self.url}: {_first_line(cause)}") from None

    @contextmanager
    def guard(self) -> Iterator[Store]:
        """Use the store; a database failure (server gone, SQLite locked too long) becomes one
        DatabaseUnavailable line instead of a driver traceback. Closes the store after."""
        try:
            yield self
        except DBAPIError as exc:
            raise DatabaseUnavailable(f"database {self.url}: {_first_line(exc.orig)}") from None
        finally:
            self.close()


def open_store(url: str, *, check_schema: bool = True, **engine_kwargs: Any) -> Store:
    """Open the database at ``url``; refuse one whose schema is not this code's."""
    engine = create_db_engine(url, **engine_kwargs)
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:  # cannot connect, or (SQLite) not a database file
        engine.dispose()
        raise DatabaseUnavailable(
            f"cannot open database {redacted(url)}: {_first_line(exc.orig)}"
        ) from None
    store = Store(engine)
    if check_schema:
        try:
            check_current(store.engine)
        except DBAPIError as exc:  # e.g. SQLite: a valid header, trashed pages
            store.close()
            raise DatabaseUnavailable(
                f"cannot open database {redacted(url)}: {_first_line(exc.orig)}"
            ) from None
        except BaseException:
            store.close()
            raise
    return store


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "unknown error").strip()
    return text.splitlines()[0] if text else type(exc).__name__
