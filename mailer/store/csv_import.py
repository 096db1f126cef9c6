"""Importing subscribers from CSV: fast, forgiving, all or nothing.

The file is streamed in chunks (memory stays flat in the number of rows). Per chunk: rows
are validated, duplicates merged, forgotten addresses refused, existing addresses fetched
with one SELECT, new ones inserted with one executemany and changed ones updated likewise.
The whole import is one transaction: an interrupted or killed import leaves the list as it
was.

On SQLite, whose one write lock would keep out every other writer (a subscriber's
unsubscribe among them) for the whole import, the expensive part runs first without it:
parsing, validation, refusing forgotten addresses and merging repeated addresses into a
private staging file (:mod:`mailer.store.import_staging`). Only then does the import take
the write lock and merge the staged rows into the list, deciding every add, update and
status change under the lock from the rows as they are then (an address unsubscribed
meanwhile stays unsubscribed).

Rules (see README "Subscribers"):

* header row: ``email`` (or ``e-mail``, ``email address``), optional ``name``; the columns
  ``export`` writes (uid, status, timestamps) are read back; any other column becomes an
  attribute (empty cells are not stored). UTF-8 with or without BOM, comma, semicolon or tab
  (guessed from the header), quoted fields, any line ends, blank lines ignored.
* an address already on the list, or repeated in the file (in any case), is merged: a
  non-empty name replaces the old one, attributes are added or replaced.
* an unsubscribed, bounced or complained address is never made active again, unless
  ``resubscribe`` (logged in its history with source "import"). A file may set a non-active
  status (e.g. an export from elsewhere), which is also logged.
* invalid rows and forgotten addresses are skipped and reported with line and reason.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    MetaData,
    String,
    Table,
    any_,
    bindparam,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer.errors import CsvError, InvalidAddress, StoreError
from mailer.store.addresses import address_hash, normalise_address, normalise_name
from mailer.store.db import Store
from mailer.store.import_staging import Staging
from mailer.store.models import ForgottenAddress, Subscriber, SubscriberStatus, utcnow
from mailer.store.status import change_status

CHUNK_ROWS = 2000
MAX_REPORTED = 20  # rejects kept in the result for display; all go to the rejects file
# One field may be large (a 2 MB notes column must not stop an import); beyond this it is
# surely not a subscriber list.
FIELD_SIZE_LIMIT = 64 * 1024 * 1024

_ALIASES = {
    "e-mail": "email",
    "email address": "email",
    "email_address": "email",
    "e-mail address": "email",
    "full name": "name",
    "full_name": "name",
}
_READ_BACK = ("uid", "status", "created_at", "status_changed_at", "status_source")
_IGNORED = ("updated_at", "status_reason")  # status_reason is read with status_source
_UID = re.compile(r"[0-9a-f]{32}")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
_SUBSCRIBERS = cast(Table, Subscriber.__table__)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str


@dataclass
class ImportResult:
    """What an import did, per address (``duplicates`` are rows merged into earlier ones)."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejected: int = 0
    resubscribed: int = 0  # inactive addresses made active (only with resubscribe)
    kept_inactive: int = 0  # inactive addresses the file lists but that stay inactive
    rejects: list[Reject] = field(default_factory=list)  # the first MAX_REPORTED


@dataclass(slots=True)
class _Row:
    line: int
    email: str
    key: str
    name: str
    attributes: dict[str, str]
    status: SubscriberStatus | None  # None: not given (active for new addresses)
    uid: str = ""
    created_at: datetime | None = None
    status_changed_at: datetime | None = None
    status_source: str = ""
    status_reason: str = ""


@dataclass
class _Columns:
    email: int
    name: int | None
    attributes: list[tuple[int, str]]
    fields: dict[str, int]  # read-back export columns


def import_file(
    store: Store,
    source: str | Path,
    *,
    rejects: Path | None = None,
    resubscribe: bool = False,
    progress: Callable[[int], None] | None = None,
    stdin: IO[bytes] | None = None,
) -> ImportResult:
    """Import the CSV file at ``source`` ("-" for standard input) in one transaction.

    The rejects CSV (line, reason, then the row's own columns) is written next to its final
    name and renamed into place only when the import commits.
    """
    name = "<stdin>" if str(source) == "-" else str(source)
    with contextlib.ExitStack() as stack:
        if str(source) == "-":
            binary = stdin or sys.stdin.buffer
        else:
            try:
                binary = stack.enter_context(open(source, "rb"))
            except OSError as exc:
                raise CsvError(f"cannot read {source}: {exc.strerror or exc}") from None
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        stack.callback(text.detach)  # leave the caller's stdin open
        out = None
        if rejects is not None:
            try:
                fd, tmp = tempfile.mkstemp(
                    dir=rejects.parent, prefix=f".{rejects.name}.", suffix=".tmp"
                )
            except OSError as exc:
                raise CsvError(f"cannot write {rejects}: {exc.strerror or exc}") from None
            out = stack.enter_context(open(fd, "w", encoding="utf-8", newline=""))
            stack.callback(_remove, tmp)
        result = import_csv(
            store, text, name=name, resubscribe=resubscribe, rejects_out=out, progress=progress
        )
        if out is not None and rejects is not None:
            out.close()
            os.replace(tmp, rejects)
        return result


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def import_csv(
    store: Store,
    text: IO[str],
    *,
    name: str = "<csv>",
    resubscribe: bool = False,
    rejects_out: IO[str] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportResult:
    """Import CSV text (opened with ``newline=""``) in one transaction; see the module doc."""
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
    try:
        header, delimiter, header_lines = _read_header(text, name)
        columns = _map_columns(header, name)
        reject_writer = None
        if rejects_out is not None:
            reject_writer = csv.writer(rejects_out)
            reject_writer.writerow(["line", "reason", *header])
        rows = _parse(text, delimiter, header_lines, header, columns)
        return _run(store, rows, name, resubscribe, reject_writer, progress, chunk_rows)
    except UnicodeDecodeError as exc:  # only from a stream not opened by import_file
        raise CsvError(f"{name}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise CsvError(f"{name}: unreadable CSV: {exc}") from None
    except OSError as exc:  # reading the file or writing the rejects failed midway
        raise CsvError(f"{name}: {exc.strerror or exc}; nothing was imported") from None


def _read_header(text: IO[str], name: str) -> tuple[list[str], str, int]:
    """The header fields, the delimiter guessed from them, and the lines they took."""
    lines = 0
    header_text = ""
    try:
        while not header_text.strip():
            header_text = text.readline()
            lines += 1
            if not header_text:
                raise CsvError(f"{name}: empty file; expected a header row with an email column")
        while header_text.count('"') % 2:  # a quoted header name with a line break in it
            more = text.readline()
            if not more:
                break
            header_text += more
            lines += 1
    except OSError as exc:
        raise CsvError(f"cannot read {name}: {exc.strerror or exc}") from None
    unquoted = re.sub(r'"[^"]*"', "", header_text)
    delimiter = max(",;\t", key=unquoted.count)
    header = next(csv.reader([header_text.rstrip("\r\n")], delimiter=delimiter), [])
    return [h.strip() for h in header], delimiter, lines


def _map_columns(header: list[str], name: str) -> _Columns:
    email = None
    name_col = None
    fields: dict[str, int] = {}
    attributes: list[tuple[int, str]] = []
    for i, raw in enumerate(header):
        label = _ALIASES.get(raw.lower(), raw.lower())
        if label == "email":
            email = i if email is None else email
        elif label == "name":
            name_col = i if name_col is None else name_col
        elif label in _READ_BACK or label == "status_reason":
            fields.setdefault(label, i)
        elif label in _IGNORED or not raw:
            continue
        else:
            attributes.append((i, raw))
    if email is None:
        found = ", ".join(repr(h) for h in header) or "nothing"
        raise CsvError(f"{name}: the header row has no 'email' column (found {found})")
    return _Columns(email, name_col, attributes, fields)


def _parse(
    text: IO[str],
    delimiter: str,
    header_lines: int,
    header: list[str],
    columns: _Columns,
) -> Iterator[tuple[_Row | Reject, list[str]]]:
    """(validated row or Reject, the row's fields) per non-blank record."""
    reader = csv.reader(text, delimiter=delimiter)
    width = len(header)
    email_at, name_at, attrs_at, fields = (
        columns.email,
        columns.name,
        columns.attributes,
        columns.fields,
    )
    end = header_lines
    for fields_ in reader:
        line, end = end + 1, header_lines + reader.line_num
        joined = "".join(fields_)
        if not joined.strip():
            continue
        try:
            if _UNDECODABLE.search(joined):
                raise InvalidAddress("not UTF-8 text")
            n = len(fields_)
            if n > width and "".join(fields_[width:]).strip():
                raise InvalidAddress(f"{n} fields but the header has {width}")
            address = normalise_address(fields_[email_at] if email_at < n else "")
            display = (
                normalise_name(fields_[name_at]) if name_at is not None and name_at < n else ""
            )
            attributes = {}
            for i, key in attrs_at:
                if i < n:
                    value = fields_[i].strip()
                    if value:
                        attributes[key] = value
            row = _Row(line, address.email, address.key, display, attributes, None)
            if fields:
                _read_back(row, fields_, fields)
        except InvalidAddress as exc:
            reason = str(exc)
            if end - line > 10:  # a quote left open swallows the lines after it
                reason += f" (this record runs to line {end}: a quote not closed?)"
            yield Reject(line, reason), fields_
            continue
        yield row, fields_


def _read_back(row: _Row, values: list[str], fields: dict[str, int]) -> None:
    """The columns ``export`` writes: uid, status, timestamps, status source and reason."""

    def get(column: str) -> str:
        i = fields.get(column)
        return values[i].strip() if i is not None and i < len(values) else ""

    status = get("status").lower()
    if status:
        try:
            row.status = SubscriberStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in SubscriberStatus)
            raise InvalidAddress(f"status: {status!r} is not one of {allowed}") from None
    uid = get("uid").lower()
    row.uid = uid if _UID.fullmatch(uid) else ""
    row.created_at = _when(get("created_at"), "created_at")
    row.status_changed_at = _when(get("status_changed_at"), "status_changed_at")
    row.status_source = get("status_source")[:32]
    if any(c in row.status_source for c in "\r\n\0"):
        raise InvalidAddress("status_source: contains a line break or NUL character")
    row.status_reason = get("status_reason")


def _when(value: str, column: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidAddress(f"{column}: {value!r} is not an ISO 8601 date and time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Importer:
    """The state of one import inside its transaction."""

    def __init__(
        self,
        conn: Connection,
        name: str,
        resubscribe: bool,
        reject_writer: Any,
        result: ImportResult | None = None,
        *,
        unique: bool = False,
    ) -> None:
        self.conn = conn
        self.name = name
        self.resubscribe = resubscribe
        self.reject_writer = reject_writer
        self.result = result or ImportResult()
        # unique: every address comes once (staged rows), no need to track those seen
        self.unique = unique
        self.now = utcnow()
        # Inserts bypass SQLAlchemy's per-row parameter processing (most of the time of an
        # import): values are converted here once, as the column types would.
        column_type = _SUBSCRIBERS.c.created_at.type
        processor = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        self.when: Callable[[datetime], Any] = processor or (lambda moment: moment)
        self.db_now = self.when(self.now)
        # Rows with a higher id were added by this import: seen again, they are duplicates.
        self.first_new_id = (conn.scalar(select(func.max(_SUBSCRIBERS.c.id))) or 0) + 1
        self.seen: Table | None = None  # see _seen_before
        self.any_forgotten = conn.scalar(select(func.count()).select_from(ForgottenAddress))

    def among(self, column: Any, values: list[str]) -> ColumnElement[bool]:
        """``column IN values``; on PostgreSQL ``= ANY(array)``: one parameter, not 2000."""
        if self.conn.dialect.name == "postgresql":
            return cast(
                "ColumnElement[bool]",
                column == any_(bindparam("values", values, type_=postgresql.ARRAY(String))),
            )
        return cast("ColumnElement[bool]", column.in_(values))

    def reject(self, reject: Reject, values: list[str]) -> None:
        self.result.rejected += 1
        if len(self.result.rejects) < MAX_REPORTED:
            self.result.rejects.append(reject)
        if self.reject_writer is not None:
            self.reject_writer.writerow([reject.line, reject.reason, *values])

    def chunk(self, rows: list[_Row], raw: dict[int, list[str]]) -> None:
        if self.any_forgotten:
            rows = self.drop_forgotten(rows, raw)
        merged: dict[str, _Row] = {}
        for row in rows:
            first = merged.get(row.key)
            if first is None:
                merged[row.key] = row
            else:
                self.result.duplicates += 1
                _merge_into(first, row)
        if not merged:
            return
        existing = self.fetch_existing(list(merged))
        new = [row for key, row in merged.items() if key not in existing]
        if new:
            self._insert(new)
        changes: list[dict[str, Any]] = []
        status_changes: list[tuple[int, SubscriberStatus, str]] = []
        # Addresses on the list before this import, merged from an earlier chunk already.
        old = [key for key, current in existing.items() if current.id < self.first_new_id]
        seen = self._seen_before(old)
        first_seen: dict[str, bool] = {}
        now_updated: list[str] = []
        for key, current in existing.items():
            earlier = seen.get(key)
            changed = self._merge_existing(merged[key], current, earlier, changes, status_changes)
            if current.id < self.first_new_id:
                if earlier is None:
                    first_seen[key] = changed
                elif changed and not earlier:
                    now_updated.append(key)
        self._remember(first_seen, now_updated)
        if changes:
            self.write_changes(changes)
        if status_changes:
            self.write_statuses(status_changes)

    # What the merge rules compare; a planner adds what it must re-check under the lock.
    existing_columns: tuple[Any, ...] = (
        _SUBSCRIBERS.c.id,
        _SUBSCRIBERS.c.email_key,
        _SUBSCRIBERS.c.name,
        _SUBSCRIBERS.c.attributes,
        _SUBSCRIBERS.c.status,
    )

    def fetch_existing(self, keys: list[str]) -> dict[str, Any]:
        """The subscribers already on the list with these addresses, by address key."""
        query = select(*self.existing_columns).where(self.among(_SUBSCRIBERS.c.email_key, keys))
        return {r.email_key: r for r in self.conn.execute(query)}

    def taken_uids(self, wanted: list[str]) -> set[str]:
        query = select(_SUBSCRIBERS.c.uid).where(self.among(_SUBSCRIBERS.c.uid, wanted))
        return set(self.conn.scalars(query))

    def write_new(self, values: list[tuple[Any, ...]]) -> None:
        _bulk_insert(self.conn, values)

    def write_changes(self, changes: list[dict[str, Any]]) -> None:
        self.conn.execute(
            update(_SUBSCRIBERS)
            .where(_SUBSCRIBERS.c.id == bindparam("_id"))
            .values(
                name=bindparam("_name"),
                attributes=bindparam("_attributes"),
                updated_at=self.now,
            ),
            changes,
        )

    def write_statuses(self, wanted: list[tuple[int, SubscriberStatus, str]]) -> None:
        self.change_statuses(wanted)

    def _seen_before(self, keys: list[str]) -> dict[str, bool]:
        """Of these addresses (on the list before the import), those an earlier chunk
        already merged, with whether that counted as updated. A temporary table keeps the
        memory flat however long the file."""
        if not keys or self.unique:
            return {}
        if self.seen is None:
            self.seen = Table(
                "mailer_import_seen",
                MetaData(),
                Column("email_key", String(320), primary_key=True),
                Column("updated", Boolean, nullable=False),
                prefixes=["TEMPORARY"],
                postgresql_on_commit="DROP",  # only the PostgreSQL path tracks addresses
            )
            self.seen.create(self.conn)
        c = self.seen.c
        query = select(c.email_key, c.updated).where(self.among(c.email_key, keys))
        return {key: bool(updated) for key, updated in self.conn.execute(query)}

    def _remember(self, first_seen: dict[str, bool], now_updated: list[str]) -> None:
        if self.unique:
            return
        assert self.seen is not None or not (first_seen or now_updated)
        if first_seen and self.seen is not None:
            rows = [{"email_key": k, "updated": u} for k, u in first_seen.items()]
            self.conn.execute(insert(self.seen), rows)
        if now_updated and self.seen is not None:
            self.conn.execute(
                update(self.seen)
                .where(self.among(self.seen.c.email_key, now_updated))
                .values(updated=True)
            )

    def drop_forgotten(self, rows: list[_Row], raw: dict[int, list[str]]) -> list[_Row]:
        hashes = {address_hash(row.key): row.key for row in rows}
        found = self.conn.scalars(
            select(ForgottenAddress.address_hash).where(
                self.among(ForgottenAddress.address_hash, list(hashes))
            )
        )
        forgotten = {hashes[h] for h in found}
        if not forgotten:
            return rows
        kept = []
        for row in rows:
            if row.key in forgotten:
                self.reject(
                    Reject(row.line, "forgotten (erased on request)"), raw.get(row.line, [])
                )
            else:
                kept.append(row)
        return kept

    def _insert(self, new: list[_Row]) -> None:
        wanted = [row.uid for row in new if row.uid]
        taken = self.taken_uids(wanted) if wanted else set()
        now, reason = self.db_now, f"imported from {self.name}"
        when = self.when
        values = []
        uids = _fresh_uids(len(new))
        for row, fresh in zip(new, uids, strict=True):
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
                    _to_json(row.attributes),
                    when(row.created_at) if row.created_at else now,
                    now,
                    when(row.status_changed_at) if row.status_changed_at else now,
                    row.status_source or "import",
                    row.status_reason if row.status_source else reason,
                )
            )
        self.write_new(values)
        self.result.added += len(values)

    def _merge_existing(
        self,
        row: _Row,
        current: Any,
        earlier: bool | None,
        changes: list[dict[str, Any]],
        status_changes: list[tuple[int, SubscriberStatus, str]],
    ) -> bool:
        """Merge a row into a subscriber already on the list; count it; return whether it
        changed anything. ``earlier``: None if this is the first time the import meets
        the address, else whether that first time counted as updated."""
        name = row.name or current.name
        attributes = {**current.attributes, **row.attributes}
        changed = bool(name != current.name or attributes != current.attributes)
        if changed:
            changes.append({"_id": current.id, "_name": name, "_attributes": attributes})
        target = row.status or SubscriberStatus.ACTIVE
        if target != current.status:
            if target != SubscriberStatus.ACTIVE:
                status_changes.append((current.id, target, row.status_reason))
                changed = True
            elif self.resubscribe:
                status_changes.append((current.id, target, "--resubscribe"))
                self.result.resubscribed += 1
                changed = True
            elif earlier is None:
                self.result.kept_inactive += 1
        if current.id >= self.first_new_id:
            self.result.duplicates += 1  # added by this import
        elif earlier is not None:
            self.result.duplicates += 1
            if changed and not earlier:  # the address counts as updated after all
                self.result.unchanged -= 1
                self.result.updated += 1
        elif changed:
            self.result.updated += 1
        else:
            self.result.unchanged += 1
        return changed

    def change_statuses(self, wanted: list[tuple[int, SubscriberStatus, str]]) -> None:
        # Rare (an explicit --resubscribe, or a file listing unsubscribes): the ORM path,
        # through the one writer of statuses, in this import's transaction.
        with Session(bind=self.conn) as session:
            for subscriber_id, status, reason in wanted:
                subscriber = session.get_one(Subscriber, subscriber_id)
                change_status(
                    session,
                    subscriber,
                    status,
                    source="import",
                    reason=reason or f"imported from {self.name}",
                )
            session.flush()


# One encoder for all rows (json.dumps with options builds a new one per call).
_to_json = json.JSONEncoder(ensure_ascii=False).encode


def _fresh_uids(n: int) -> list[str]:
    """``n`` new subscriber uids, as :func:`mailer.tokens.new_uid` makes them, in one go."""
    blob = secrets.token_hex(16 * n)
    return [blob[i : i + 32] for i in range(0, 32 * n, 32)]


_INSERT_COLUMNS = (
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


def _bulk_insert(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert subscriber rows (values in _INSERT_COLUMNS order, already converted)."""
    table = conn.dialect.identifier_preparer.format_table(_SUBSCRIBERS)
    columns = ", ".join(_INSERT_COLUMNS)
    if conn.dialect.name == "postgresql":
        # COPY: several times faster than any INSERT; same transaction as the rest.
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    if conn.dialect.paramstyle == "qmark":
        marks = ", ".join("?" * len(_INSERT_COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        return
    conn.execute(insert(_SUBSCRIBERS), [dict(zip(_INSERT_COLUMNS, r, strict=True)) for r in rows])


def _merge_into(first: _Row, later: _Row) -> None:
    """Fold a repeated row into the first one: later names and attributes win."""
    if later.name:
        first.name = later.name
    first.attributes.update(later.attributes)
    # An unsubscribe anywhere in the file wins over "active".
    if later.status is not None and later.status != SubscriberStatus.ACTIVE:
        first.status = later.status
        first.status_changed_at = later.status_changed_at or first.status_changed_at
        first.status_source = later.status_source or first.status_source
        first.status_reason = later.status_reason or first.status_reason


def _run(
    store: Store,
    rows: Iterator[tuple[_Row | Reject, list[str]]],
    name: str,
    resubscribe: bool,
    reject_writer: Any,
    progress: Callable[[int], None] | None,
    chunk_rows: int,
) -> ImportResult:
    if store.engine.dialect.name == "sqlite":
        return _run_staged(store, rows, name, resubscribe, reject_writer, progress, chunk_rows)
    # PostgreSQL: row locks, so the import can decide and write chunk by chunk.
    with store.engine.connect() as conn:
        importer = _Importer(conn, name, resubscribe, reject_writer)
        result = importer.result
        chunk: list[_Row] = []
        raw: dict[int, list[str]] = {}
        try:
            keep_raw = bool(importer.any_forgotten and reject_writer is not None)
            for item, values in rows:
                result.rows += 1
                if isinstance(item, _Row):
                    chunk.append(item)
                    if keep_raw:  # for the rejects file, should the address be forgotten
                        raw[item.line] = values
                    if len(chunk) >= chunk_rows:
                        importer.chunk(chunk, raw)
                        chunk, raw = [], {}
                        if progress is not None:
                            progress(result.rows)
                else:
                    importer.reject(item, values)
            importer.chunk(chunk, raw)
            conn.commit()
        except IntegrityError:
            conn.rollback()
            raise StoreError(
                f"{name}: another process changed the list during the import; nothing was "
                "imported, run it again"
            ) from None
        except BaseException:
            conn.rollback()
            raise
    if progress is not None:
        progress(result.rows)
    return result


class _Planner(_Importer):
    """Decides a staged import against the list as it is, without writing to it: the
    writes go to the staging file, with the state of every subscriber they depend on."""

    def __init__(self, conn: Connection, staging: Staging, *args: Any, **kwargs: Any) -> None:
        super().__init__(conn, *args, **kwargs)
        self.staging = staging

    existing_columns = (
        *_Importer.existing_columns,
        type_coerce(_SUBSCRIBERS.c.updated_at, String).label("seen"),
    )

    def fetch_existing(self, keys: list[str]) -> dict[str, Any]:
        found = super().fetch_existing(keys)
        self.staging.saw([(r.id, r.seen) for r in found.values()])
        return found

    def taken_uids(self, wanted: list[str]) -> set[str]:
        return super().taken_uids(wanted) | self.staging.taken_uids(wanted)

    def write_new(self, values: list[tuple[Any, ...]]) -> None:
        self.staging.plan_inserts(values)

    def write_changes(self, changes: list[dict[str, Any]]) -> None:
        self.staging.plan_updates(
            [(c["_id"], c["_name"], _to_json(c["_attributes"])) for c in changes]
        )

    def write_statuses(self, wanted: list[tuple[int, SubscriberStatus, str]]) -> None:
        self.staging.plan_statuses([(i, status.value, reason) for i, status, reason in wanted])


def _run_staged(
    store: Store,
    rows: Iterator[tuple[_Row | Reject, list[str]]],
    name: str,
    resubscribe: bool,
    reject_writer: Any,
    progress: Callable[[int], None] | None,
    chunk_rows: int,
) -> ImportResult:
    """SQLite: stage the file without the write lock, then merge it under the lock."""
    result = ImportResult()
    with (
        tempfile.TemporaryDirectory(prefix="mailer-import-") as folder,
        Staging(Path(folder) / "staged.db") as staging,
        store.engine.connect() as conn,
    ):
        # Phase 1: only reads of the list (forgotten addresses); nobody waits for us.
        reader = _Importer(conn, name, resubscribe, reject_writer, result)
        keep_raw = bool(reader.any_forgotten and reject_writer is not None)
        chunk: list[_Row] = []
        raw: dict[int, list[str]] = {}

        def stage() -> None:
            staging.add(reader.drop_forgotten(chunk, raw) if reader.any_forgotten else chunk)
            conn.rollback()  # hold no read snapshot between chunks

        for item, values in rows:
            result.rows += 1
            if isinstance(item, _Row):
                chunk.append(item)
                if keep_raw:  # for the rejects file, should the address be forgotten
                    raw[item.line] = values
                if len(chunk) >= chunk_rows:
                    stage()
                    chunk, raw = [], {}
                    if progress is not None:
                        progress(result.rows)
            else:
                reader.reject(item, values)
        stage()
        result.duplicates += staging.duplicates
        # Phase 2: decide every add, update and status change against the list as it is,
        # still without the lock (only reads, one short snapshot per chunk).
        parsed = dataclasses.replace(result, rejects=list(result.rejects))
        planner = _Planner(conn, staging, name, resubscribe, reject_writer, result, unique=True)
        # Refused in phase 1, as of its start; any forgotten since: see _plan_holds.
        forgotten = reader.any_forgotten or 0
        planner.any_forgotten = 0
        planner.first_new_id = sys.maxsize  # nothing on the list was added by this import
        for batch in staging.batches(chunk_rows):
            planner.chunk(batch, {})
            conn.rollback()
        staging.finish()

        # Phase 3: the write lock, for the merge only. If a subscriber the plan depends on
        # changed meanwhile (an unsubscribe, say), the plan is dropped and the import is
        # decided again under the lock, row by row as without staging.
        conn.exec_driver_sql("ATTACH DATABASE ? AS mailer_stage", (str(staging.path),))
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            locked = time.perf_counter()
            try:
                if _plan_holds(conn, forgotten):
                    _apply_plan(conn, planner)
                    how = "plan applied"
                else:
                    result = parsed
                    importer = _Importer(
                        conn, name, resubscribe, reject_writer, result, unique=True
                    )
                    for batch in staging.batches(chunk_rows):
                        importer.chunk(batch, {})
                    how = "decided again under the lock (the list changed meanwhile)"
                conn.commit()
            except IntegrityError:
                conn.rollback()
                raise StoreError(
                    f"{name}: another process changed the list during the import; nothing "
                    "was imported, run it again"
                ) from None
            except BaseException:
                conn.rollback()
                raise
            log.debug(
                "import %s: %s; write lock held %.3f s", name, how, time.perf_counter() - locked
            )
        finally:
            conn.exec_driver_sql("DETACH DATABASE mailer_stage")
    if progress is not None:
        progress(result.rows)
    return result


_FORGOTTEN = cast(Table, ForgottenAddress.__table__).name


def _plan_holds(conn: Connection, forgotten: int) -> bool:
    """Whether the list is still as the plan saw it: no subscriber it read has changed or
    gone, none of its new addresses or uids has been added, nothing more was forgotten."""
    subscribers = _SUBSCRIBERS.name
    changed = conn.exec_driver_sql(
        f"SELECT EXISTS (SELECT 1 FROM mailer_stage.seen s LEFT JOIN main.{subscribers} m "
        "ON m.id = s.id WHERE m.updated_at IS NOT s.updated_at) "
        f"OR EXISTS (SELECT 1 FROM mailer_stage.ins i JOIN main.{subscribers} m "
        "ON m.email_key = i.email_key) "
        f"OR EXISTS (SELECT 1 FROM mailer_stage.ins i JOIN main.{subscribers} m ON m.uid = i.uid) "
        f"OR (SELECT count(*) FROM main.{_FORGOTTEN}) != ?",
        (forgotten,),
    ).scalar()
    return not changed


def _apply_plan(conn: Connection, planner: _Planner) -> None:
    """Carry out the plan, set-based (statuses through the one writer of statuses)."""
    subscribers = _SUBSCRIBERS.name
    columns = ", ".join(_INSERT_COLUMNS)
    conn.exec_driver_sql(
        f"INSERT INTO main.{subscribers} ({columns}) "
        f"SELECT {columns} FROM mailer_stage.ins ORDER BY rowid"
    )
    conn.exec_driver_sql(
        f"UPDATE main.{subscribers} SET name = u.name, attributes = u.attributes, "
        f"updated_at = ? FROM mailer_stage.upd u WHERE {subscribers}.id = u.id",
        (planner.db_now,),
    )
    last = 0
    while batch := conn.exec_driver_sql(
        "SELECT rowid, id, status, reason FROM mailer_stage.stat WHERE rowid > ? "
        "ORDER BY rowid LIMIT 2000",
        (last,),
    ).all():
        last = batch[-1][0]
        planner.change_statuses(
            [(i, SubscriberStatus(status), reason) for _, i, status, reason in batch]
        )
