"""One `mailer send` run per issue at a time.

Two runs of the same issue (a second terminal, a cron job and a hand-started resume) would
both take the same ``pending`` rows and send every one of them twice: the ledger's crash
safety bounds duplicates per connection of ONE run, not across runs. So a run holds a lock
for its issue from before its snapshot until it ends, and a second run is refused at once.

PostgreSQL: a session-level advisory lock on a connection of its own (not the pool's), any
machine. The lock lives only as long as that connection: if it drops (a server restart, a
``pg_terminate_backend``, a network fault), another run could start, so a watcher thread
notices the drop at once (the socket turns readable) and the lease the run checks before
every message says so: the run stops. SQLite: an exclusive ``flock`` on a small file next to
the database (the processes share the file), which lasts as long as the process. Either way
the lock goes with the process: a ``kill -9`` releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from mailer.errors import IssueBusy, SendError
from mailer.store.db import Store, create_db_engine

WATCH_SECONDS = 1.0  # a probe this often even when the socket stays quiet


def _busy(slug: str) -> IssueBusy:
    return IssueBusy(
        f"issue {slug} is being sent by another `mailer send` right now; "
        "wait for it to end (or stop it), then run again to resume"
    )


def lock_key(schema: str, slug: str) -> int:
    """The advisory lock key of issue ``slug`` (signed 64-bit, as PostgreSQL takes it)."""
    # Advisory locks are per database: the schema keeps the lists of two schemas in one
    # database (or parallel test runs) from blocking each other's sends.
    name = f"mailer-send\0{schema}\0{slug}".encode()
    return int.from_bytes(hashlib.sha256(name).digest()[:8], "big") - (1 << 63)


class Lease:
    """What a run checks before each message: the lock is still held (always, here)."""

    def check(self) -> None:
        return None


class _Watched(Lease, threading.Thread):
    """The PostgreSQL lock's connection, watched: :meth:`check` raises once it is gone."""

    def __init__(self, conn: Connection, slug: str) -> None:
        threading.Thread.__init__(self, name="send-lock-watch", daemon=True)
        self._conn = conn
        self._slug = slug
        self._closing = threading.Event()
        self._wake, self._waker = os.pipe()  # close() wakes the watcher at once
        self.lost = threading.Event()

    def check(self) -> None:
        if self.lost.is_set():
            raise SendError(
                f"the send lock of issue {self._slug} was lost (its database connection "
                "dropped): stopped, so that no second run sends the same rows; run again to "
                "resume"
            )

    def run(self) -> None:
        dbapi = self._conn.connection.dbapi_connection
        fileno = dbapi.fileno() if dbapi is not None else -1
        while True:
            try:
                # Readable: the server said something (a termination notice) or hung up.
                select.select([fileno, self._wake], [], [], WATCH_SECONDS)
                if self._closing.is_set():
                    return
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
            except (SQLAlchemyError, OSError, ValueError):
                self.lost.set()
                return

    def close(self) -> None:
        self._closing.set()
        os.write(self._waker, b"x")
        self.join()
        os.close(self._wake)
        os.close(self._waker)


@contextmanager
def send_lock(store: Store, slug: str) -> Iterator[Lease]:
    """Hold the send lock of issue ``slug``; SendError if another run holds it. The lease
    yielded tells the run whether it still holds it."""
    url = store.engine.url
    if url.get_backend_name() == "postgresql":
        with _postgres_lock(store, slug) as lease:
            yield lease
        return
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield Lease()  # one process is all there can be
        return
    fd = os.open(f"{database}-send-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # One byte per issue (by hash) in one file: issues do not block each other.
        offset = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:4], "big") >> 1
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            raise _busy(slug) from None
        yield Lease()
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _postgres_lock(store: Store, slug: str) -> Iterator[Lease]:
    # Its own engine without a pool: a connection nothing else checks out, closed for good.
    engine = create_db_engine(store.engine.url.render_as_string(False), poolclass=NullPool)
    try:
        conn = engine.connect()
        schema = conn.scalar(text("SELECT current_schema()")) or ""
        key = lock_key(schema, slug)
        if not conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
            conn.close()
            raise _busy(slug)
        conn.commit()
        watch = _Watched(conn, slug)
        watch.start()
        try:
            yield watch
        finally:
            watch.close()
            with contextlib.suppress(SQLAlchemyError):
                if not watch.lost.is_set():  # a lost connection holds nothing to free
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    conn.commit()
                conn.close()
    finally:
        engine.dispose()
