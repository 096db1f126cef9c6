"""Importing chunk by chunk inside the list's own transaction: PostgreSQL's strategy.

PostgreSQL locks rows, not the database, so the import can decide and write each chunk as
it reads the file: refuse forgotten addresses, fold repeats, fetch the addresses already
there with one SELECT, then insert, update and change statuses (:mod:`mailer.store.
import_rules` decides, :mod:`mailer.store.import_list` reads and writes). The whole import
is one transaction: an interrupted or killed import leaves the list as it was. Two imports
of one list run one after the other (an advisory lock: the second merges into the first's
rows), and the last step before the commit refuses an address forgotten meanwhile
(:func:`mailer.store.import_list.forgotten_meanwhile`).

SQLite's staged import (:mod:`mailer.store.import_staged`) uses the same
:class:`ChunkMerger` for its fallback: deciding again under its write lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import Boolean, Column, Connection, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailer.errors import StoreError
from mailer.store.csv_reader import Reject, Row
from mailer.store.db import Store
from mailer.store.import_list import (
    RejectLog,
    Stamp,
    among,
    any_forgotten,
    bulk_insert,
    change_statuses,
    changed_meanwhile,
    chunked,
    drop_forgotten,
    fetch_listed,
    forgotten_count,
    forgotten_meanwhile,
    import_lock,
    insert_values,
    next_id,
    taken_uids,
    write_names,
)
from mailer.store.import_rules import ImportResult, fold_repeats, plan_chunk

__all__ = ["ChunkMerger", "import_chunked"]


class ChunkMerger:
    """Decides and writes chunks of rows inside ``conn``'s transaction, counting them in
    ``result``. ``track_repeats``: an address may come again in a later chunk (so the
    addresses met are remembered, in a temporary table); False when every address comes
    once (SQLite's staged rows)."""

    def __init__(
        self,
        conn: Connection,
        *,
        name: str,
        resubscribe: bool,
        result: ImportResult,
        rejects: RejectLog,
        track_repeats: bool,
    ) -> None:
        self.conn = conn
        self.name = name
        self.resubscribe = resubscribe
        self.result = result
        self.rejects = rejects
        self.stamp = Stamp.of(conn)
        # Rows with this id or higher were added by this import: seen again, duplicates.
        self.added_from = next_id(conn)
        self.forgotten = forgotten_count(conn)
        # PostgreSQL: other writers commit while the import runs (SQLite's merge holds the
        # database's write lock).
        self.live = conn.dialect.name == "postgresql"
        self.repeats = _Repeats(conn) if track_repeats else None

    def merge(self, rows: list[Row], fields: dict[int, list[str]]) -> None:
        """Merge a chunk; ``fields``: the rows' CSV fields by line, for the rejects file."""
        conn, result = self.conn, self.result
        if not self.forgotten and self.live:
            # A forget may commit while the import runs: from then on each chunk is checked
            # (until then, one cheap query per chunk); forgotten_meanwhile() catches the rest.
            self.forgotten = int(any_forgotten(conn))
        if self.forgotten:
            rows = drop_forgotten(conn, rows, fields, result=result, rejects=self.rejects)
        merged, repeats = fold_repeats(rows)
        result.duplicates += repeats
        if not merged:
            return
        existing = fetch_listed(conn, list(merged))
        seen: dict[str, bool] = {}
        if self.repeats is not None:
            old = [key for key, row in existing.items() if row.id < self.added_from]
            seen = self.repeats.seen_before(old)
        plan = plan_chunk(
            merged,
            existing,
            seen,
            added_from=self.added_from,
            resubscribe=self.resubscribe,
            result=result,
        )
        if plan.new:
            wanted = [row.uid for row in plan.new if row.uid]
            taken = taken_uids(conn, wanted) if wanted else set()
            bulk_insert(conn, insert_values(plan.new, taken, self.stamp, self.name))
        if self.repeats is not None:
            self.repeats.remember(plan.first_seen, plan.now_updated)
        if plan.names:
            write_names(conn, plan.names, self.stamp.now)
        if plan.statuses:
            change_statuses(conn, plan.statuses, self.name)


class _Repeats:
    """The addresses on the list before the import that an earlier chunk met, with whether
    that counted as updated. A temporary table keeps the memory flat however long the
    file; it is made when first needed and dropped at commit."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.table: Table | None = None

    def seen_before(self, keys: list[str]) -> dict[str, bool]:
        if not keys:
            return {}
        if self.table is None:
            self.table = Table(
                "mailer_import_seen",
                MetaData(),
                Column("email_key", String(320), primary_key=True),
                Column("updated", Boolean, nullable=False),
                prefixes=["TEMPORARY"],
                postgresql_on_commit="DROP",
            )
            self.table.create(self.conn)
        c = self.table.c
        query = select(c.email_key, c.updated).where(among(self.conn, c.email_key, keys))
        return {key: bool(updated) for key, updated in self.conn.execute(query)}

    def remember(self, first_seen: dict[str, bool], now_updated: list[str]) -> None:
        if self.table is None:  # no address on the list met yet
            assert not (first_seen or now_updated)
            return
        if first_seen:
            rows = [{"email_key": k, "updated": u} for k, u in first_seen.items()]
            self.conn.execute(insert(self.table), rows)
        if now_updated:
            self.conn.execute(
                update(self.table)
                .where(among(self.conn, self.table.c.email_key, now_updated))
                .values(updated=True)
            )


def forgotten_during_import(name: str, erased: int) -> StoreError:
    return StoreError(
        f"{name}: {erased} of its addresses {'was' if erased == 1 else 'were'} forgotten "
        "(erased on request) while the import ran; nothing was imported: run it again and "
        f"{'it' if erased == 1 else 'they'} will be skipped"
    )


def import_chunked(
    store: Store,
    rows: Iterator[tuple[Row | Reject, list[str]]],
    *,
    name: str,
    resubscribe: bool,
    rejects: RejectLog,
    progress: Callable[[int], None] | None,
    chunk_rows: int,
) -> ImportResult:
    """Import the reader's rows chunk by chunk, in one transaction."""
    result = ImportResult()
    with store.engine.connect() as conn:
        import_lock(conn)  # another import of this list first (waits for it to commit)
        merger = ChunkMerger(
            conn,
            name=name,
            resubscribe=resubscribe,
            result=result,
            rejects=rejects,
            track_repeats=True,
        )
        try:
            # (the fields of every row: an address may turn out forgotten in any chunk)
            keep_fields = rejects.writer is not None
            for chunk, fields in chunked(
                rows,
                size=chunk_rows,
                result=result,
                rejects=rejects,
                keep_fields=keep_fields,
                progress=progress,
            ):
                merger.merge(chunk, fields)
            erased = forgotten_meanwhile(conn, merger.added_from)
            if erased:
                raise forgotten_during_import(name, erased)
            conn.commit()
        except IntegrityError:
            conn.rollback()
            raise changed_meanwhile(name) from None
        except BaseException:
            conn.rollback()
            raise
    if progress is not None:
        progress(result.rows)
    return result
