"""Reading a subscriber CSV file: dialect and header, columns, one validated row per record.

No database here: :func:`read_layout` reads the header row (the delimiter is guessed from
it) and maps its columns; :func:`parse_rows` then yields, per non-blank record, either a
validated :class:`Row` or a :class:`Reject` (line and reason), each with the record's own
fields (for the rejects file). What happens to the rows is decided in
:mod:`mailer.store.import_rules`.

Columns: ``email`` (or ``e-mail``, ``email address``), optional ``name``; the columns
``export`` writes (uid, status, timestamps) are read back; any other column becomes an
attribute (empty cells are not stored). A column named twice is refused (which one would
count is a guess); so is a file that is not UTF-8 (UTF-16 is recognised and named). In a
row with the export's ``mailer_export`` mark, the quote export put before a formula-like
cell is taken off again (:mod:`mailer.store.csv_cells`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from mailer.errors import CsvError, InvalidAddress, InvalidRow
from mailer.store.addresses import control_character, normalise_address, normalise_name
from mailer.store.csv_cells import CONSENT_COLUMNS, ESCAPED, MARKER, restore
from mailer.store.models import SubscriberStatus

__all__ = ["FIELD_SIZE_LIMIT", "Layout", "Reject", "Row", "parse_rows", "read_layout"]

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
_IGNORED = (  # status_reason is read with status_source
    "updated_at",
    "status_reason",
    # An export's proof of consent: for the record, not restored (nor made attributes).
    *CONSENT_COLUMNS,
)
_UID = re.compile(r"[0-9a-f]{32}")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
# One search per record for both that and a control character (but tab and line breaks):
# rare, so the record is looked at closer only when it matches.
_SUSPICIOUS = re.compile("[\udc80-\udcff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str


@dataclass(slots=True)
class Row:
    """One valid record: the address (as stored, and its key), name and attributes, and
    what an export from elsewhere may say of it."""

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


@dataclass(frozen=True)
class Layout:
    """What the header row says: its fields, the delimiter, the lines it took, and where
    each kind of column is."""

    header: list[str]
    delimiter: str
    header_lines: int
    email: int
    name: int | None
    attributes: list[tuple[int, str]]
    fields: dict[str, int]  # read-back export columns
    marker: int | None = None  # the export's mailer_export column


def read_layout(text: IO[str], name: str) -> Layout:
    """Read the header row of ``text`` (opened with ``newline=""``); CsvError if there is
    none, it has no email column or a column twice. ``name`` is the file's, for messages."""
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
    header, delimiter, lines = _read_header(text, name)
    columns: dict[str, int] = {}  # by label (fields lower-cased, attributes as written)
    attributes: list[tuple[int, str]] = []
    for i, raw in enumerate(header):
        if not raw:
            continue
        label = _ALIASES.get(raw.lower(), raw.lower())
        field = label in ("email", "name", MARKER, *_READ_BACK, *_IGNORED)
        key = label if field else raw
        if key in columns:
            first = header[columns[key]]
            raise CsvError(
                f"{name}: the header row has the column {key!r} twice ({first!r} in column "
                f"{columns[key] + 1}, {raw!r} in column {i + 1}): remove or rename one"
            )
        columns[key] = i
        control = control_character(raw, lines=True)  # a quoted name may span lines
        if control:
            raise CsvError(
                f"{name}: the header row's column {i + 1} contains a control character ({control})"
            )
        if not field:
            attributes.append((i, raw))
    if "email" not in columns:
        found = ", ".join(repr(h) for h in header) or "nothing"
        raise CsvError(f"{name}: the header row has no 'email' column (found {found})")
    fields = {label: columns[label] for label in (*_READ_BACK, "status_reason") if label in columns}
    return Layout(
        header,
        delimiter,
        lines,
        columns["email"],
        columns.get("name"),
        attributes,
        fields,
        columns.get(MARKER),
    )


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
    _check_encoding(header_text, name, lines)
    unquoted = re.sub(r'"[^"]*"', "", header_text)
    delimiter = max(",;\t", key=unquoted.count)
    header = next(csv.reader([header_text.rstrip("\r\n")], delimiter=delimiter), [])
    return [h.strip() for h in header], delimiter, lines


def _check_encoding(header: str, name: str, line: int) -> None:
    """CsvError if the header row shows the file is not UTF-8 (read with surrogateescape):
    UTF-16 or UTF-32 has a byte order mark or a NUL byte beside every ASCII letter."""
    if header.startswith(("\udcff\udcfe", "\udcfe\udcff")) or "\0" in header:
        raise CsvError(
            f"{name}: not UTF-8 text but UTF-16 (or UTF-32): save it as UTF-8 (in Excel: "
            '"CSV UTF-8"), or convert it, e.g. with iconv -f UTF-16 -t UTF-8'
        )
    if _UNDECODABLE.search(header):
        raise CsvError(f"{name}: line {line}: the header row is not UTF-8 text; save it as UTF-8")


def parse_rows(text: IO[str], layout: Layout) -> Iterator[tuple[Row | Reject, list[str]]]:
    """(validated row or Reject, the record's fields as written) per non-blank record after
    the header. The caller handles csv.Error, UnicodeDecodeError and OSError from ``text``.

    One loop, its lookups hoisted: an import's time goes here (benchmarks/import.py)."""
    reader = csv.reader(text, delimiter=layout.delimiter)
    header_lines = layout.header_lines
    width = len(layout.header)
    email_at, name_at, attrs_at, fields = (
        layout.email,
        layout.name,
        layout.attributes,
        layout.fields,
    )
    marker, suspicious = layout.marker, _SUSPICIOUS.search
    end = header_lines
    for fields_ in reader:
        line, end = end + 1, header_lines + reader.line_num
        joined = "".join(fields_)
        if not joined.strip():
            continue
        try:
            control = suspicious(joined) is not None  # rare: then look closer
            if control and _UNDECODABLE.search(joined):
                raise InvalidRow("not UTF-8 text")
            values = fields_
            if marker is not None and _exported(fields_, marker) and "'" in joined:
                values = [restore(value) for value in fields_]
            n = len(values)
            if n > width and "".join(values[width:]).strip():
                raise InvalidRow(f"{n} fields but the header has {width}")
            address = normalise_address(values[email_at] if email_at < n else "")
            display = normalise_name(values[name_at]) if name_at is not None and name_at < n else ""
            attributes = {}
            for i, key in attrs_at:
                if i < n:
                    value = values[i].strip()
                    if value:
                        attributes[key] = value
            if control:  # names were checked by normalise_name, addresses by theirs
                _check_controls(attributes)
            row = Row(line, address.email, address.key, display, attributes, None)
            if fields:
                _read_back(row, values, fields)
        except (InvalidAddress, InvalidRow) as exc:
            reason = str(exc)
            if end - line > 10:  # a quote left open swallows the lines after it
                reason += f" (this record runs to line {end}: a quote not closed?)"
            yield Reject(line, reason), fields_
            continue
        yield row, fields_


def _exported(values: list[str], marker: int) -> bool:
    """Whether the row carries the export's mark (its cells were neutralised)."""
    mark = values[marker].strip() if marker < len(values) else ""
    if mark and mark != ESCAPED:
        raise InvalidRow(f"{MARKER}: {mark!r} is not {ESCAPED} (written by export) or empty")
    return bool(mark)


def _check_controls(attributes: dict[str, str]) -> None:
    """InvalidRow for an attribute value with a control character (but tab, line breaks)."""
    for key, value in attributes.items():
        found = control_character(value, lines=True)
        if found:
            raise InvalidRow(f"{key}: contains a control character ({found})")


def _read_back(row: Row, values: list[str], fields: dict[str, int]) -> None:
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
            raise InvalidRow(f"status: {status!r} is not one of {allowed}") from None
    uid = get("uid").lower()
    row.uid = uid if _UID.fullmatch(uid) else ""
    row.created_at = _when(get("created_at"), "created_at")
    row.status_changed_at = _when(get("status_changed_at"), "status_changed_at")
    row.status_source = get("status_source")[:32]
    if any(c in row.status_source for c in "\r\n\0"):
        raise InvalidRow("status_source: contains a line break or NUL character")
    row.status_reason = get("status_reason")


def _when(value: str, column: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRow(f"{column}: {value!r} is not an ISO 8601 date and time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
