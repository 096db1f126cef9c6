"""The CSV reader on its own: header, dialect, columns, row validation (no database)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from mailer.errors import CsvError
from mailer.store.csv_reader import Layout, Reject, Row, parse_rows, read_layout
from mailer.store.models import SubscriberStatus


def _text(data: str) -> io.StringIO:
    return io.StringIO(data, newline="")


def _read(data: str) -> tuple[Layout, list[Row | Reject]]:
    text = _text(data)
    layout = read_layout(text, "list.csv")
    return layout, [item for item, _fields in parse_rows(text, layout)]


def test_columns_are_mapped_by_name_and_alias() -> None:
    layout = read_layout(
        _text("Org;Full Name;E-Mail Address;uid;updated_at;status_reason;;\n"), "x.csv"
    )
    assert (layout.delimiter, layout.header_lines) == (";", 1)
    assert (layout.email, layout.name) == (2, 1)
    assert layout.attributes == [(0, "Org")]  # updated_at is ignored, empty names skipped
    assert layout.fields == {"uid": 3, "status_reason": 5}


def test_delimiter_inside_quotes_does_not_count() -> None:
    layout = read_layout(_text('"a;b;c",email\n'), "x.csv")
    assert layout.delimiter == ","
    assert layout.header == ["a;b;c", "email"]


def test_quoted_header_over_two_lines_and_blank_lines_before_it() -> None:
    layout, items = _read('\n\nemail,"long\nnote"\na@example.org,hi\n')
    assert layout.header == ["email", "long\nnote"]
    assert layout.header_lines == 4
    assert items == [Row(5, "a@example.org", "a@example.org", "", {"long\nnote": "hi"}, None)]


def test_header_problems_name_the_file() -> None:
    with pytest.raises(CsvError, match=r"^list\.csv: empty file; expected a header row"):
        read_layout(_text(" \n\n"), "list.csv")
    with pytest.raises(CsvError, match=r"^list\.csv: the header row has no 'email' column"):
        read_layout(_text('name,"org\n'), "list.csv")  # a quote never closed: one line


def test_rows_are_validated_with_line_and_reason() -> None:
    _, items = _read(
        "email,name,status,created_at,status_source\n"
        "A@Example.ORG, Ann ,unsubscribed,2022-05-01T10:00:00+02:00,crm\n"
        "b@example.org,B,gone,,\n"
        "c@example.org,C,,yesterday,\n"
        'd@example.org,D,,,"x\ny"\n'
        "e@example.org,E,,,,extra\n"
        "not-an-address,F,,,\n"
    )
    first, *rejects = items
    assert isinstance(first, Row)
    assert (first.email, first.key, first.name, first.status, first.status_source) == (
        "A@example.org",
        "a@example.org",
        "Ann",
        SubscriberStatus.UNSUBSCRIBED,
        "crm",
    )
    assert first.created_at == datetime(2022, 5, 1, 8, 0, tzinfo=UTC)
    assert rejects == [
        Reject(3, "status: 'gone' is not one of active, unsubscribed, bounced, complained"),
        Reject(4, "created_at: 'yesterday' is not an ISO 8601 date and time"),
        Reject(5, "status_source: contains a line break or NUL character"),
        Reject(7, "6 fields but the header has 5"),
        Reject(8, "email: 'not-an-address': An email address must have an @-sign."),
    ]


def test_read_back_columns_from_an_export() -> None:
    uid = "0123456789abcdef0123456789abcdef"
    _, items = _read(
        "uid,email,status_changed_at,status_source,status_reason\n"
        f"{uid.upper()},a@example.org,2022-05-01 10:00,web,clicked\n"
        "not-a-uid,b@example.org,,,\n"
    )
    a, b = items
    assert isinstance(a, Row) and isinstance(b, Row)
    assert (a.uid, a.status_source, a.status_reason) == (uid, "web", "clicked")
    assert a.status_changed_at == datetime(2022, 5, 1, 10, 0, tzinfo=UTC)  # naive: UTC
    assert (b.uid, b.status, b.created_at) == ("", None, None)  # a malformed uid: a new one


def test_each_item_comes_with_its_own_fields() -> None:
    text = _text("email,org\na@example.org,ISEI\nbroken,X\n")
    layout = read_layout(text, "list.csv")
    assert [fields for _item, fields in parse_rows(text, layout)] == [
        ["a@example.org", "ISEI"],
        ["broken", "X"],
    ]
