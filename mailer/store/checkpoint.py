"""SQLite WAL checkpoints off the commit path, for a process with bursts of small writes.

By default SQLite checkpoints inside the commit that grows the write-ahead log past 1000
pages: that commit copies the pages into the database and syncs it, taking ten times as long
as the others. In the web app every one-click POST in that batch waits for it. Instead, the
app's connections skip the automatic checkpoint and a background thread runs a PASSIVE one a
few times a second: it never blocks a writer (WAL lets a checkpoint and a write run at once),
and other processes (a send) keep their automatic checkpoints.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from mailer.store.db import Store

INTERVAL = 0.25  # seconds between checkpoints


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class WalCheckpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` every INTERVAL; a no-op off SQLite."""

    def __init__(self, store: Store, interval: float = INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        engine = self.store.engine
        if engine.dialect.name != "sqlite" or self._thread is not None:
            return
        event.listen(engine, "connect", _no_autocheckpoint)
        engine.dispose()  # pooled connections were opened with the automatic checkpoint
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        event.remove(self.store.engine, "connect", _no_autocheckpoint)
        self.checkpoint()  # leave a short log behind

    def checkpoint(self) -> None:
        try:
            with self.store.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except DBAPIError:
            pass  # the database is gone or busy: the next round (or a send) checkpoints

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.checkpoint()
