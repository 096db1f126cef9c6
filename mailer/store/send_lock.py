"""One `mailer send` run per issue at a time.

Two runs of the same issue (a second terminal, a cron job and a hand-started resume) would
both take the same ``pending`` rows and send every one of them twice: the ledger's crash
safety bounds duplicates per connection of ONE run, not across runs. So a run holds a lock
for its issue from before its snapshot until it ends, and a second run is refused at once.

PostgreSQL: a session-level advisory lock on a dedicated connection (any machine). SQLite: an
exclusive ``flock`` on a small file next to the database (the processes share the file).
Either way the lock goes with the process: a ``kill -9`` releases it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from mailer.errors import SendError
from mailer.store.db import Store


def _busy(slug: str) -> SendError:
    return SendError(
        f"issue {slug} is being sent by another `mailer send` right now; "
        "wait for it to end (or stop it), then run again to resume"
    )


@contextmanager
def send_lock(store: Store, slug: str) -> Iterator[None]:
    """Hold the send lock of issue ``slug``; SendError if another run holds it."""
    url = store.engine.url
    if url.get_backend_name() == "postgresql":
        with store.engine.connect() as conn:
            # Advisory locks are per database: the schema keeps the lists of two schemas in
            # one database (or parallel test runs) from blocking each other's sends.
            schema = conn.scalar(text("SELECT current_schema()")) or ""
            name = f"mailer-send\0{schema}\0{slug}".encode()
            key = int.from_bytes(hashlib.sha256(name).digest()[:8], "big")
            key -= 1 << 63  # advisory lock keys are signed 64-bit
            if not conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
                raise _busy(slug)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
        return
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield  # one process is all there can be
        return
    fd = os.open(f"{database}-send-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # One byte per issue (by hash) in one file: issues do not block each other.
        offset = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:4], "big") >> 1
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            raise _busy(slug) from None
        yield
    finally:
        os.close(fd)  # releases the lock
