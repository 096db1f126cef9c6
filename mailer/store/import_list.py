"""What an import reads from the list and writes to it, shared by both strategies.

Set-based and fast: one SELECT per chunk for the addresses already there, inserts that
bypass SQLAlchemy's per-row processing (COPY on PostgreSQL), executemany updates; status
changes go through :func:`mailer.store.status.change_status`, the one writer of statuses.
Also the two things every strategy does with what the reader yields: :class:`RejectLog`
and :func:`chunked`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    Table,
    any_,
    bindparam,
    func,
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mailer.errors import StoreError
from mailer.store.addresses import address_hash
from mailer.store.csv_reader import Reject, Row
from mailer.store.import_rules import ImportResult, NameChange, StatusChange, count_reject
from mailer.store.models import ForgottenAddress, Subscriber, SubscriberStatus, utcnow
from mailer.store.status import change_status

SUBSCRIBERS = cast(Table, Subscriber.__table__)
FORGOTTEN = cast(Table, ForgottenAddress.__table__)
# The subscriber columns an import writes for a new address, in this order.
INSERT_COLUMNS = (
    "uid",
    "email",
    "email_key",
    "name",
    "status",
    "attributes",
    "created_at",
    "updated_at",
    "status_changed_at",
    "status_source",
    "status_reason",
)
# What the merge rules compare (see import_rules.Listed).
_LISTED = (
    SUBSCRIBERS.c.id,
    SUBSCRIBERS.c.email_key,
    SUBSCRIBERS.c.name,
    SUBSCRIBERS.c.attributes,
    SUBSCRIBERS.c.status,
)
# A subscriber's version as stored, to tell later whether it changed (label "seen").
VERSION = type_coerce(SUBSCRIBERS.c.updated_at, String).label("seen")
FORGOTTEN_REASON = "forgotten (erased on request)"

# One encoder for all rows (json.dumps with options builds a new one per call).
to_json = json.JSONEncoder(ensure_ascii=False).encode


class RowWriter(Protocol):
    """A csv.writer."""

    def writerow(self, row: Iterable[Any], /) -> Any: ...


@dataclass(frozen=True)
class RejectLog:
    """Counts rejects in a result and writes each, with its fields, to the rejects file."""

    writer: RowWriter | None = None

    def add(self, result: ImportResult, reject: Reject, values: list[str]) -> None:
        count_reject(result, reject)
        if self.writer is not None:
            self.writer.writerow([reject.line, reject.reason, *values])


def chunked(
    rows: Iterator[tuple[Row | Reject, list[str]]],
    *,
    size: int,
    result: ImportResult,
    rejects: RejectLog,
    keep_fields: bool,
    progress: Callable[[int], None] | None,
) -> Iterator[tuple[list[Row], dict[int, list[str]]]]:
    """The valid rows in chunks of ``size`` (the last one may be short or empty), with each
    row's fields by line if ``keep_fields`` (for the rejects file, should the address turn
    out forgotten); counts rows and logs rejects on the way. ``progress`` is told the rows
    read after each full chunk has been dealt with."""
    chunk: list[Row] = []
    fields: dict[int, list[str]] = {}
    for item, values in rows:
        result.rows += 1
        if isinstance(item, Row):
            chunk.append(item)
            if keep_fields:
                fields[item.line] = values
            if len(chunk) >= size:
                yield chunk, fields
                chunk, fields = [], {}
                if progress is not None:
                    progress(result.rows)
        else:
            rejects.add(result, item, values)
    yield chunk, fields


def changed_meanwhile(name: str) -> StoreError:
    return StoreError(
        f"{name}: another process changed the list during the import; nothing was "
        "imported, run it again"
    )


def among(conn: Connection, column: Any, values: list[str]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(array)``: one parameter, not 2000."""
    if conn.dialect.name == "postgresql":
        return cast(
            "ColumnElement[bool]",
            column == any_(bindparam("values", values, type_=postgresql.ARRAY(String))),
        )
    return cast("ColumnElement[bool]", column.in_(values))


def fetch_listed(conn: Connection, keys: list[str], *extra: Any) -> dict[str, Any]:
    """The subscribers already on the list with these addresses, by address key (rows
    with the columns of import_rules.Listed, plus ``extra``)."""
    query = select(*_LISTED, *extra).where(among(conn, SUBSCRIBERS.c.email_key, keys))
    return {r.email_key: r for r in conn.execute(query)}


def taken_uids(conn: Connection, wanted: list[str]) -> set[str]:
    query = select(SUBSCRIBERS.c.uid).where(among(conn, SUBSCRIBERS.c.uid, wanted))
    return set(conn.scalars(query))


def next_id(conn: Connection) -> int:
    """The id the next subscriber added will get at least."""
    return (conn.scalar(select(func.max(SUBSCRIBERS.c.id))) or 0) + 1


def forgotten_count(conn: Connection) -> int:
    return conn.scalar(select(func.count()).select_from(ForgottenAddress)) or 0


def any_forgotten(conn: Connection) -> bool:
    return conn.scalar(select(FORGOTTEN.c.address_hash).limit(1)) is not None


def forgotten_meanwhile(conn: Connection, added_from: int) -> int:
    """PostgreSQL, last thing before an import commits: how many of the subscribers added
    since id ``added_from`` have an address forgotten meanwhile (while the import ran, a
    ``forget`` cannot see its uncommitted rows, so it deletes nothing and commits).

    The SHARE lock waits for any ``forget`` (or ``add --force``) still running and keeps
    new ones out until the import commits, so this check sees every forget that commits
    before the import does; a ``forget`` of a subscriber the import updated waits for the
    import's row lock instead, and then deletes it."""
    if conn.dialect.name != "postgresql":
        return 0  # SQLite's import merges under the write lock: no forget runs meanwhile
    table = conn.dialect.identifier_preparer.format_table(FORGOTTEN)
    conn.exec_driver_sql(f"LOCK TABLE {table} IN SHARE MODE")
    if not any_forgotten(conn):
        return 0
    # address_hash() in SQL: sha256 hex of the key's UTF-8 bytes.
    digest = func.encode(func.sha256(func.convert_to(SUBSCRIBERS.c.email_key, "UTF8")), "hex")
    query = (
        select(func.count())
        .select_from(SUBSCRIBERS)
        .where(SUBSCRIBERS.c.id >= added_from, digest.in_(select(FORGOTTEN.c.address_hash)))
    )
    return conn.scalar(query) or 0


def import_lock(conn: Connection) -> None:
    """PostgreSQL: wait for any other import of this list (schema) to commit, so two
    imports run one after the other and the second merges into the first's rows instead
    of colliding on their addresses. Released when the transaction ends."""
    if conn.dialect.name != "postgresql":
        return
    schema = conn.scalar(text("SELECT current_schema()")) or ""
    digest = hashlib.sha256(f"mailer-import\0{schema}".encode()).digest()
    key = int.from_bytes(digest[:8], "big") - (1 << 63)  # advisory keys are signed 64-bit
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def drop_forgotten(
    conn: Connection,
    rows: list[Row],
    fields: dict[int, list[str]],
    *,
    result: ImportResult,
    rejects: RejectLog,
) -> list[Row]:
    """The rows whose address was not forgotten; the others are rejected."""
    hashes = {address_hash(row.key): row.key for row in rows}
    found = conn.scalars(
        select(ForgottenAddress.address_hash).where(
            among(conn, ForgottenAddress.address_hash, list(hashes))
        )
    )
    forgotten = {hashes[h] for h in found}
    if not forgotten:
        return rows
    kept = []
    for row in rows:
        if row.key in forgotten:
            rejects.add(result, Reject(row.line, FORGOTTEN_REASON), fields.get(row.line, []))
        else:
            kept.append(row)
    return kept


@dataclass(frozen=True)
class Stamp:
    """The import's one moment, and how to store a moment without SQLAlchemy's per-row
    parameter processing (most of the time of an import): converted once per value here,
    as the column type would."""

    now: datetime
    stored_now: Any
    store: Callable[[datetime], Any]

    @classmethod
    def of(cls, conn: Connection) -> Stamp:
        column_type = SUBSCRIBERS.c.created_at.type
        processor = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        store: Callable[[datetime], Any] = processor or (lambda moment: moment)
        now = utcnow()
        return cls(now, store(now), store)


def insert_values(
    new: list[Row], taken: set[str], stamp: Stamp, name: str
) -> list[tuple[Any, ...]]:
    """Subscriber rows for new addresses, in INSERT_COLUMNS order, as stored. A uid the
    file gives is kept unless ``taken`` (which grows with the uids handed out here)."""
    now, reason = stamp.stored_now, f"imported from {name}"
    when = stamp.store
    values = []
    for row, fresh in zip(new, _fresh_uids(len(new)), strict=True):
        uid = row.uid
        if not uid or uid in taken:
            uid = fresh
        taken.add(uid)
        values.append(
            (
                uid,
                row.email,
                row.key,
                row.name,
                (row.status or SubscriberStatus.ACTIVE).value,
                to_json(row.attributes),
                when(row.created_at) if row.created_at else now,
                now,
                when(row.status_changed_at) if row.status_changed_at else now,
                row.status_source or "import",
                row.status_reason if row.status_source else reason,
            )
        )
    return values


def _fresh_uids(n: int) -> list[str]:
    """``n`` new subscriber uids, as :func:`mailer.tokens.new_uid` makes them, in one go."""
    blob = secrets.token_hex(16 * n)
    return [blob[i : i + 32] for i in range(0, 32 * n, 32)]


def bulk_insert(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert subscriber rows (values in INSERT_COLUMNS order, already converted)."""
    table = conn.dialect.identifier_preparer.format_table(SUBSCRIBERS)
    columns = ", ".join(INSERT_COLUMNS)
    if conn.dialect.name == "postgresql":
        # COPY: several times faster than any INSERT; same transaction as the rest.
        raw = conn.connection.driver_connection
        assert raw is not None
        statement = f"COPY {table} ({columns}) FROM STDIN"
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            with raw.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except dbapi_error as exc:
            # The driver's own cursor: wrap its error as SQLAlchemy would (a unique
            # violation becomes IntegrityError), for the callers' and guard()'s handlers.
            raise DBAPIError.instance(statement, None, exc, dbapi_error) from None
        return
    if conn.dialect.paramstyle == "qmark":
        marks = ", ".join("?" * len(INSERT_COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        return
    conn.execute(insert(SUBSCRIBERS), [dict(zip(INSERT_COLUMNS, r, strict=True)) for r in rows])


def write_names(conn: Connection, changes: list[NameChange], now: datetime) -> None:
    conn.execute(
        update(SUBSCRIBERS)
        .where(SUBSCRIBERS.c.id == bindparam("_id"))
        .values(name=bindparam("_name"), attributes=bindparam("_attributes"), updated_at=now),
        [{"_id": c.id, "_name": c.name, "_attributes": c.attributes} for c in changes],
    )


def change_statuses(conn: Connection, changes: list[StatusChange], name: str) -> None:
    """Rare (an explicit --resubscribe, or a file listing unsubscribes): the ORM path,
    through the one writer of statuses, in the import's transaction."""
    with Session(bind=conn) as session:
        for change in changes:
            subscriber = session.get_one(Subscriber, change.id)
            change_status(
                session,
                subscriber,
                change.status,
                source="import",
                reason=change.reason or f"imported from {name}",
            )
        session.flush()
