"""Importing on SQLite: stage and plan without the write lock, then merge under it.

SQLite's one write lock would keep out every other writer (a subscriber's unsubscribe
among them) for the whole import, so the expensive part runs without it:

1. stage: parse, validate, refuse forgotten addresses and fold repeated addresses into a
   private staging file (:mod:`mailer.store.import_staging`); only reads of the list;
2. plan: decide every add, update and status change against the list as it is, still
   without the lock (one short read snapshot per chunk), into the staging file, with the
   version of every subscriber the plan read;
3. merge: take the write lock; if the list is still as the plan saw it, carry out the
   plan set-based; otherwise drop it and decide again under the lock, chunk by chunk
   (:class:`mailer.store.import_chunked.ChunkMerger`), so an address unsubscribed
   meanwhile stays unsubscribed.

Everything the list gets happens in the one transaction of step 3.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from mailer.errors import StoreError
from mailer.store.csv_reader import Reject, Row
from mailer.store.db import Store
from mailer.store.import_chunked import ChunkMerger
from mailer.store.import_list import (
    FORGOTTEN,
    INSERT_COLUMNS,
    SUBSCRIBERS,
    VERSION,
    RejectLog,
    Stamp,
    change_statuses,
    changed_meanwhile,
    chunked,
    drop_forgotten,
    fetch_listed,
    forgotten_count,
    insert_values,
    taken_uids,
    to_json,
)
from mailer.store.import_rules import ImportResult, StatusChange, plan_chunk
from mailer.store.import_staging import Staging
from mailer.store.models import SubscriberStatus

__all__ = ["import_staged"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Import:
    """What every step of one import needs."""

    conn: Connection
    staging: Staging
    name: str
    resubscribe: bool
    rejects: RejectLog
    chunk_rows: int


def import_staged(
    store: Store,
    rows: Iterator[tuple[Row | Reject, list[str]]],
    *,
    name: str,
    resubscribe: bool,
    rejects: RejectLog,
    progress: Callable[[int], None] | None,
    chunk_rows: int,
) -> ImportResult:
    """Import the reader's rows: stage, plan, then merge under the write lock."""
    try:
        workspace = tempfile.TemporaryDirectory(prefix="mailer-import-")
    except OSError as exc:
        full = exc.errno == errno.ENOSPC
        raise _staging_failed(name, exc.strerror or str(exc), full=full) from None
    try:
        with (
            workspace as folder,
            Staging(Path(folder) / "staged.db") as staging,
            store.engine.connect() as conn,
        ):
            job = _Import(
                conn=conn,
                staging=staging,
                name=name,
                resubscribe=resubscribe,
                rejects=rejects,
                chunk_rows=chunk_rows,
            )
            result = _stage_plan_merge(job, rows, progress)
    except sqlite3.Error as exc:  # the staging file's own connection, never the list's
        full = getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"
        raise _staging_failed(name, str(exc), full=full) from None
    if progress is not None:
        progress(result.rows)
    return result


def _stage_plan_merge(
    job: _Import,
    rows: Iterator[tuple[Row | Reject, list[str]]],
    progress: Callable[[int], None] | None,
) -> ImportResult:
    parsed = ImportResult()
    # Refused while staging, as of its start; any forgotten since: see _plan_holds.
    forgotten = _stage(job, rows, parsed, progress)
    # The plan counts in a copy: deciding again under the lock starts from step 1's.
    planned = dataclasses.replace(parsed, rejects=list(parsed.rejects))
    stamp = _plan(job, planned)
    return _merge(job, parsed, planned, stamp, forgotten)


def _staging_failed(name: str, reason: str, *, full: bool) -> StoreError:
    """The staging file (in $TMPDIR) failed: say so and name the folder, not the list."""
    where = tempfile.gettempdir()
    if full:
        return StoreError(
            f"{name}: the temporary folder {where} is full (an import stages the file there, "
            "about 650 bytes a row): free some space or set TMPDIR to a folder with more "
            "room; nothing was imported"
        )
    return StoreError(
        f"{name}: cannot stage the import in the temporary folder {where}: {reason}; "
        "nothing was imported"
    )


def _stage(
    job: _Import,
    rows: Iterator[tuple[Row | Reject, list[str]]],
    result: ImportResult,
    progress: Callable[[int], None] | None,
) -> int:
    """Step 1: only reads of the list (forgotten addresses); nobody waits for us. Returns
    the number of forgotten addresses at the start."""
    conn, staging = job.conn, job.staging
    forgotten = forgotten_count(conn)
    for chunk, fields in chunked(
        rows,
        size=job.chunk_rows,
        result=result,
        rejects=job.rejects,
        keep_fields=bool(forgotten and job.rejects.writer is not None),
        progress=progress,
    ):
        if forgotten:
            chunk = drop_forgotten(conn, chunk, fields, result=result, rejects=job.rejects)
        staging.add(chunk)
        conn.rollback()  # hold no read snapshot between chunks
    result.duplicates += staging.duplicates
    return forgotten


def _plan(job: _Import, result: ImportResult) -> Stamp:
    """Step 2: decide against the list as it is, into the staging file (still only reads
    of the list, one short snapshot per chunk); count in ``result``. Returns the moment
    the plan stamps its writes with."""
    conn, staging = job.conn, job.staging
    stamp = Stamp.of(conn)
    for batch in staging.batches(job.chunk_rows):
        existing = fetch_listed(conn, [row.key for row in batch], VERSION)
        staging.saw([(row.id, row.seen) for row in existing.values()])
        plan = plan_chunk(
            {row.key: row for row in batch},  # staged: one row per address
            existing,
            {},
            added_from=None,  # nothing on the list was added by this import
            resubscribe=job.resubscribe,
            result=result,
        )
        if plan.new:
            wanted = [row.uid for row in plan.new if row.uid]
            taken = (taken_uids(conn, wanted) | staging.taken_uids(wanted)) if wanted else set()
            staging.plan_inserts(insert_values(plan.new, taken, stamp, job.name))
        if plan.names:
            staging.plan_updates([(c.id, c.name, to_json(c.attributes)) for c in plan.names])
        if plan.statuses:
            staging.plan_statuses([(c.id, c.status.value, c.reason) for c in plan.statuses])
        conn.rollback()
    staging.finish()
    return stamp


def _merge(
    job: _Import, parsed: ImportResult, planned: ImportResult, stamp: Stamp, forgotten: int
) -> ImportResult:
    """Step 3: the write lock, for the merge only. If a subscriber the plan depends on
    changed meanwhile (an unsubscribe, say), the plan is dropped and the import decided
    again under the lock, chunk by chunk, counting from ``parsed`` (the counts of step 1).
    Returns the counts of what was done."""
    conn, staging = job.conn, job.staging
    conn.exec_driver_sql("ATTACH DATABASE ? AS mailer_stage", (str(staging.path),))
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        locked = time.perf_counter()
        try:
            if _plan_holds(conn, forgotten):
                _apply_plan(conn, stamp, job.name)
                result, how = planned, "plan applied"
            else:
                merger = ChunkMerger(
                    conn,
                    name=job.name,
                    resubscribe=job.resubscribe,
                    result=parsed,
                    rejects=job.rejects,
                    track_repeats=False,
                )
                for batch in staging.batches(job.chunk_rows):
                    merger.merge(batch, {})
                result, how = parsed, "decided again under the lock (the list changed meanwhile)"
            conn.commit()
        except IntegrityError:
            conn.rollback()
            raise changed_meanwhile(job.name) from None
        except BaseException:
            conn.rollback()
            raise
        log.debug(
            "import %s: %s; write lock held %.3f s", job.name, how, time.perf_counter() - locked
        )
    finally:
        conn.exec_driver_sql("DETACH DATABASE mailer_stage")
    return result


def _plan_holds(conn: Connection, forgotten: int) -> bool:
    """Whether the list is still as the plan saw it: no subscriber it read has changed or
    gone, none of its new addresses or uids has been added, nothing more was forgotten."""
    subscribers = SUBSCRIBERS.name
    changed = conn.exec_driver_sql(
        f"SELECT EXISTS (SELECT 1 FROM mailer_stage.seen s LEFT JOIN main.{subscribers} m "
        "ON m.id = s.id WHERE m.updated_at IS NOT s.updated_at) "
        f"OR EXISTS (SELECT 1 FROM mailer_stage.ins i JOIN main.{subscribers} m "
        "ON m.email_key = i.email_key) "
        f"OR EXISTS (SELECT 1 FROM mailer_stage.ins i JOIN main.{subscribers} m ON m.uid = i.uid) "
        f"OR (SELECT count(*) FROM main.{FORGOTTEN.name}) != ?",
        (forgotten,),
    ).scalar()
    return not changed


def _apply_plan(conn: Connection, stamp: Stamp, name: str) -> None:
    """Carry out the plan, set-based (statuses through the one writer of statuses)."""
    subscribers = SUBSCRIBERS.name
    columns = ", ".join(INSERT_COLUMNS)
    conn.exec_driver_sql(
        f"INSERT INTO main.{subscribers} ({columns}) "
        f"SELECT {columns} FROM mailer_stage.ins ORDER BY rowid"
    )
    conn.exec_driver_sql(
        f"UPDATE main.{subscribers} SET name = u.name, attributes = u.attributes, "
        f"updated_at = ? FROM mailer_stage.upd u WHERE {subscribers}.id = u.id",
        (stamp.stored_now,),
    )
    last = 0
    while batch := conn.exec_driver_sql(
        "SELECT rowid, id, status, reason FROM mailer_stage.stat WHERE rowid > ? "
        "ORDER BY rowid LIMIT 2000",
        (last,),
    ).all():
        last = batch[-1][0]
        change_statuses(
            conn,
            [StatusChange(i, SubscriberStatus(status), reason) for _, i, status, reason in batch],
            name,
        )
