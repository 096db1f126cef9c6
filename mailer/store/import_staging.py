"""A private scratch database for an import's validated rows, one per address.

An import on SQLite collects its rows here before it takes the list's write lock (see
:mod:`mailer.store.import_staged`). The file is the import's own (a temporary folder): no
journal, no syncs; a crash loses only this scratch file, never anything of the list.
Repeated addresses are merged as they arrive (earlier rows first), so the merge under the
lock meets each address once, in the order the file first listed it.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from mailer.store.csv_reader import Row
from mailer.store.import_rules import fold_repeats, merge_into

__all__ = ["Staging"]

_SCHEMA = """
CREATE TABLE staged (key TEXT PRIMARY KEY, row BLOB NOT NULL);
CREATE TABLE seen (id INTEGER PRIMARY KEY, updated_at);
CREATE TABLE ins (
    uid TEXT UNIQUE, email, email_key, name, status, attributes, created_at, updated_at,
    status_changed_at, status_source, status_reason
);
CREATE TABLE upd (id INTEGER PRIMARY KEY, name, attributes);
CREATE TABLE stat (id, status, reason);
"""


class Staging:
    """Tables: ``staged`` the merged rows of the file (by address key, in file order);
    the plan decided from them: ``ins`` subscribers to add (values as stored), ``upd``
    names and attributes to set, ``stat`` status changes; ``seen`` the ``updated_at`` of
    every subscriber the plan read (to tell whether it still holds)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(_SCHEMA)
        self.db.execute("BEGIN")
        self.duplicates = 0  # rows merged into an earlier row of the same address

    def __enter__(self) -> Staging:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.db.close()

    def add(self, rows: list[Row]) -> None:
        """Stage rows (in file order), merging each into an earlier one of its address."""
        merged, repeats = fold_repeats(rows)
        self.duplicates += repeats
        if not merged:
            return
        staged = self.db.execute(
            "SELECT key, row FROM staged WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(list(merged)),),
        )
        updates: list[tuple[bytes, str]] = []
        for key, blob in staged:
            first = _load(blob)
            merge_into(first, merged.pop(key))
            self.duplicates += 1
            updates.append((_dump(first), key))
        if updates:
            self.db.executemany("UPDATE staged SET row = ? WHERE key = ?", updates)
        self.db.executemany(
            "INSERT INTO staged (key, row) VALUES (?, ?)",
            [(key, _dump(row)) for key, row in merged.items()],
        )

    def saw(self, seen: list[tuple[int, Any]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)", seen)

    def taken_uids(self, wanted: list[str]) -> set[str]:
        query = "SELECT uid FROM ins WHERE uid IN (SELECT value FROM json_each(?))"
        return {uid for (uid,) in self.db.execute(query, (json.dumps(wanted),))}

    def plan_inserts(self, values: list[tuple[Any, ...]]) -> None:
        self.db.executemany(f"INSERT INTO ins VALUES ({', '.join('?' * 11)})", values)

    def plan_updates(self, values: list[tuple[int, str, str]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO upd VALUES (?, ?, ?)", values)

    def plan_statuses(self, values: list[tuple[int, str, str]]) -> None:
        self.db.executemany("INSERT INTO stat VALUES (?, ?, ?)", values)

    def finish(self) -> None:
        """Commit the staging file, for the list's connection to attach it."""
        self.db.execute("COMMIT")

    def batches(self, size: int) -> Iterator[list[Row]]:
        """The staged rows, one per address, in the order the file first listed them."""
        cursor = self.db.execute("SELECT row FROM staged ORDER BY rowid")
        while batch := cursor.fetchmany(size):
            yield [_load(blob) for (blob,) in batch]


def _dump(row: Any) -> bytes:
    return pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)


def _load(blob: bytes) -> Row:
    # Only ever a file this process wrote itself, in its own temporary folder.
    row: Row = pickle.loads(blob)
    return row
