"""CSV import: real-world edge cases, merge rules, statuses, all-or-nothing."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.errors import CsvError
from mailer.store.csv_import import ImportResult, import_csv, import_file
from mailer.store.db import Store
from mailer.store.models import Subscriber, SubscriberStatus
from mailer.store.subscribers import (
    add_subscriber,
    count_by_status,
    forget,
    get_subscriber,
    list_subscribers,
    set_status,
)

ImportText = Callable[..., ImportResult]  # the import_text fixture (tests/store/conftest.py)
REPO = Path(__file__).resolve().parents[2]


def _emails(store: Store) -> list[str]:
    return [s.email for s in list_subscribers(store)]


def _count(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Subscriber)) or 0)


def test_plain_file_with_attributes(store: Store, import_text: ImportText) -> None:
    result = import_text("email,name,org\na@example.org,Ann,ISEI\nb@example.org,,\n")
    assert (result.added, result.updated, result.unchanged, result.rejected) == (2, 0, 0, 0)
    a = get_subscriber(store, "a@example.org")
    assert (a.name, a.attributes, a.status, a.status_source) == (
        "Ann",
        {"org": "ISEI"},
        "active",
        "import",
    )
    assert get_subscriber(store, "b@example.org").attributes == {}  # empty cells not stored


def test_utf8_bom_and_semicolons_and_crlf(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "\ufeffE-mail;Name;Ville\r\njose@example.org;José García;Genève\r\n".encode()
        + 'zoe@example.org;"Zoë; the second";Zürich\r\n'.encode()
    )
    result = import_file(store, path)
    assert (result.added, result.rejected) == (2, 0)
    jose = get_subscriber(store, "jose@example.org")
    assert (jose.name, jose.attributes) == ("José García", {"Ville": "Genève"})
    assert get_subscriber(store, "zoe@example.org").name == "Zoë; the second"


def test_quoted_commas_quotes_and_line_breaks_in_fields(
    store: Store, import_text: ImportText
) -> None:
    text = (
        'email,name,notes\na@example.org,"Doe, Jane","said ""hi""\non two lines"\n'
        "b@example.org,Bob,x\n"
    )
    result = import_text(text)
    assert (result.added, result.rejected) == (2, 0)
    a = get_subscriber(store, "a@example.org")
    assert a.name == "Doe, Jane"
    assert a.attributes == {"notes": 'said "hi"\non two lines'}


def test_tab_separated(store: Store, import_text: ImportText) -> None:
    assert import_text("name\temail\nAnn\ta@example.org\n").added == 1


def test_blank_lines_are_ignored_and_line_numbers_stay_right(
    store: Store, import_text: ImportText
) -> None:
    text = "\n\nemail,name\n\na@example.org,A\n\n,\n   \nbroken,B\n\n"
    result = import_text(text)
    assert (result.rows, result.added, result.rejected) == (2, 1, 1)
    assert result.rejects[0].line == 9
    assert "broken" in result.rejects[0].reason


def test_mixed_case_duplicates_are_merged(store: Store, import_text: ImportText) -> None:
    text = (
        "email,name,org\nJane@Example.org,Jane,A\njane@example.ORG,,B\nJANE@EXAMPLE.ORG,Jane D,\n"
    )
    result = import_text(text)
    assert (result.added, result.duplicates, result.rejected) == (1, 2, 0)
    jane = get_subscriber(store, "jane@example.org")
    assert (jane.email, jane.name, jane.attributes) == ("Jane@example.org", "Jane D", {"org": "B"})


def test_duplicates_across_chunks(store: Store, import_text: ImportText) -> None:
    rows = [f"u{i}@example.org,U{i}" for i in range(10)]
    rows += ["U3@example.org,U3", "u9@example.org,U9"]
    result = import_text("email,name\n" + "\n".join(rows) + "\n", chunk_rows=3)
    assert (result.added, result.duplicates, result.updated, result.unchanged) == (10, 2, 0, 0)
    assert _count(store) == 10
    # Again over the same list: each address counts once, repeats as duplicates, twice over.
    for _ in range(2):
        result = import_text("email,name\n" + "\n".join(rows) + "\n", chunk_rows=3)
        assert (result.added, result.duplicates, result.updated, result.unchanged) == (0, 2, 0, 10)
    # A later row wins, also from a later chunk.
    result = import_text(
        "email,name\n" + "\n".join([*rows, "u3@EXAMPLE.org,Three"]) + "\n", chunk_rows=3
    )
    assert (result.duplicates, result.updated, result.unchanged) == (3, 1, 9)
    assert get_subscriber(store, "u3@example.org").name == "Three"


def test_existing_addresses_are_updated_or_unchanged(store: Store, import_text: ImportText) -> None:
    import_text("email,name,org\na@example.org,A,x\nb@example.org,B,y\n")
    result = import_text(
        "email,name,org,lang\nA@EXAMPLE.ORG,A,x,\nb@example.org,Bee,y,en\nc@example.org,C,,\n"
    )
    assert (result.added, result.updated, result.unchanged) == (1, 1, 1)
    b = get_subscriber(store, "b@example.org")
    assert (b.name, b.attributes) == ("Bee", {"org": "y", "lang": "en"})
    # An empty name in the file does not erase the one on the list.
    import_text("email,name\nb@example.org,\n")
    assert get_subscriber(store, "b@example.org").name == "Bee"


def test_invalid_rows_are_skipped_with_line_and_reason(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name\nok@example.org,Ok\nnot-an-address,X\nbad@@example.org,Y\n"
        'crlf@example.org,"Evil\r\nBcc: x@example.org"\nok2@example.org,Ok2,surplus\n',
        encoding="utf-8",
        newline="",
    )
    rejects = tmp_path / "rejects.csv"
    result = import_file(store, path, rejects=rejects)
    assert (result.added, result.rejected) == (1, 4)
    reasons = {r.line: r.reason for r in result.rejects}
    assert set(reasons) == {3, 4, 5, 7}
    assert reasons[3].startswith("email: 'not-an-address'")
    assert reasons[5] == "name: contains a line break or NUL character"
    assert reasons[7] == "3 fields but the header has 2"
    with rejects.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["line", "reason", "email", "name"]
    assert [r[0] for r in rows[1:]] == ["3", "4", "5", "7"]
    assert rows[1][2:] == ["not-an-address", "X"]
    assert _emails(store) == ["ok@example.org"]


def test_unclosed_quote_is_pointed_out(store: Store, import_text: ImportText) -> None:
    rows = "".join(f"u{i}@example.org,U\n" for i in range(20))
    result = import_text(f'email,name\nok@example.org,Ok\n"a@example.org,A\n{rows}')
    assert (result.added, result.rejected) == (1, 1)
    assert result.rejects[0].line == 3
    assert result.rejects[0].reason.endswith("(this record runs to line 23: a quote not closed?)")


def test_bytes_that_are_not_utf8_reject_only_their_row(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"email,name\na@example.org,Ann\nb@example.org,Jos\xe9\n")
    result = import_file(store, path)
    assert (result.added, result.rejected) == (1, 1)
    assert result.rejects[0].line == 3 and result.rejects[0].reason == "not UTF-8 text"


def test_two_megabyte_row(store: Store, import_text: ImportText) -> None:
    big = "x" * (2 * 1024 * 1024)
    result = import_text(f'email,name,notes\na@example.org,A,"{big}"\nb@example.org,B,small\n')
    assert (result.added, result.rejected) == (2, 0)
    assert len(get_subscriber(store, "a@example.org").attributes["notes"]) == len(big)


def test_file_without_email_column(store: Store, import_text: ImportText) -> None:
    with pytest.raises(
        CsvError, match=r"<csv>: the header row has no 'email' column \(found 'name', 'org'\)"
    ):
        import_text("name,org\nAnn,ISEI\n")
    with pytest.raises(CsvError, match="empty file"):
        import_text("\n\n")


def test_unreadable_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(CsvError, match=f"cannot read {tmp_path}/missing.csv: No such file"):
        import_file(store, tmp_path / "missing.csv")
    with pytest.raises(CsvError, match=f"cannot read {tmp_path}: Is a directory"):
        import_file(store, tmp_path)


def test_standard_input(store: Store) -> None:
    data = io.BytesIO("\ufeffemail\na@example.org\n".encode())
    assert import_file(store, "-", stdin=data).added == 1


def test_inactive_addresses_are_never_reactivated(store: Store, import_text: ImportText) -> None:
    for email, status in [
        ("u@example.org", SubscriberStatus.UNSUBSCRIBED),
        ("b@example.org", SubscriberStatus.BOUNCED),
        ("c@example.org", SubscriberStatus.COMPLAINED),
    ]:
        add_subscriber(store, email)
        set_status(store, email, status, source="web")
    text = "email,name,status\nU@example.org,U,\nb@example.org,B,active\nc@example.org,C,\n"
    result = import_text(text)
    assert (result.kept_inactive, result.resubscribed, result.updated) == (3, 0, 3)
    assert count_by_status(store)[SubscriberStatus.ACTIVE] == 0
    # Only an explicit --resubscribe does it, logged in the history with source "import";
    # never for a spam complaint (issue 10: a complainer is never mailed again).
    result = import_text(text, resubscribe=True)
    assert (result.resubscribed, result.kept_inactive) == (2, 1)
    assert get_subscriber(store, "c@example.org").status == SubscriberStatus.COMPLAINED
    u = get_subscriber(store, "u@example.org")
    assert u.status == SubscriberStatus.ACTIVE and u.status_source == "import"
    assert [(e.new_status, e.source) for e in u.events][-1] == ("active", "import")


def test_file_can_record_unsubscribes(store: Store, import_text: ImportText) -> None:
    add_subscriber(store, "a@example.org")
    result = import_text(
        "email,status,status_reason\na@example.org,unsubscribed,asked at the event\n"
        "n@example.org,bounced,\nx@example.org,gone,\n",
        name="crm.csv",
    )
    assert (result.added, result.updated, result.rejected) == (1, 1, 1)
    assert result.rejects[0].reason.startswith("status: 'gone' is not one of")
    a = get_subscriber(store, "a@example.org")
    assert (a.status, a.status_source, a.status_reason) == (
        "unsubscribed",
        "import",
        "asked at the event",
    )
    assert get_subscriber(store, "n@example.org").status == SubscriberStatus.BOUNCED


def test_forgotten_addresses_are_rejected(store: Store, tmp_path: Path) -> None:
    forget(store, "gone@example.org")
    path = tmp_path / "list.csv"
    path.write_text("email,name\nGONE@example.org,G\nkept@example.org,K\n", encoding="utf-8")
    result = import_file(store, path, rejects=tmp_path / "rejects.csv")
    assert (result.added, result.rejected) == (1, 1)
    assert result.rejects[0].line == 2
    assert result.rejects[0].reason == "forgotten (erased on request)"
    with (tmp_path / "rejects.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1] == ["2", "forgotten (erased on request)", "GONE@example.org", "G"]


def _write_rows(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "org"])
        writer.writerows([f"user{i}@example{i % 7}.org", f"User {i}", "ISEI"] for i in range(n))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_import_leaves_nothing(
    store: Store, database_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    add_subscriber(store, "before@example.org")
    path = tmp_path / "big.csv"
    _write_rows(path, 200_000)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MAILER_DATABASE_URL": database_url}
    (tmp_path / "mailer.toml").write_text((REPO / "mailer.toml").read_text(encoding="utf-8"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", "subscribers", "import", str(path), "--progress"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    # Kill it once several chunks are written inside its (uncommitted) transaction.
    line = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line or (line.startswith("...") and int(line.split()[1]) >= 20_000):
            break
    assert line.startswith("..."), f"import did not report progress: {line!r}"
    proc.send_signal(sig)
    _, rest = proc.communicate()  # the rest of stderr; closes the pipe
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # Ctrl-C: rolled back, one line, exit 130
        assert proc.returncode == 130, rest
        assert rest.splitlines()[-1] == "interrupted"
    assert _emails(store) == ["before@example.org"]
    # And the database is still usable: the next import commits.
    _write_rows(path, 100)
    assert import_file(store, path).added == 100
    assert _count(store) == 101


def test_an_unsubscribe_anywhere_in_the_file_wins(store: Store, import_text: ImportText) -> None:
    add_subscriber(store, "old@example.org", name="Old")
    text = (
        "email,name,status,status_reason\n"
        "new@example.org,New,,\nold@example.org,,,\n"
        "NEW@example.org,,unsubscribed,asked\nold@example.org,Older,unsubscribed,too\n"
        "new@example.org,Newer,active,\n"
    )
    result = import_text(text, chunk_rows=2)
    assert (result.added, result.updated, result.duplicates, result.rejected) == (1, 1, 3, 0)
    new, old = get_subscriber(store, "new@example.org"), get_subscriber(store, "old@example.org")
    # (The reason kept for an address new to the list differs: SQLite folds the rows
    # before adding it, PostgreSQL adds it, then changes its status in a later chunk.)
    assert (new.name, new.status) == ("Newer", "unsubscribed")
    assert (old.name, old.status, old.events[-1].reason) == ("Older", "unsubscribed", "too")


def test_text_that_is_not_utf8_in_a_strict_stream(store: Store) -> None:
    text = io.TextIOWrapper(io.BytesIO(b"email\n\xff@example.org\n"), "utf-8", newline="")
    with pytest.raises(CsvError, match=r"^<csv>: not UTF-8 text \(invalid start byte\)$"):
        import_csv(store, text)
    assert _count(store) == 0


def test_rejects_file_that_fills_up_imports_nothing(store: Store) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    rows = "".join(f"ok{i}@example.org\nbroken{i}\n" for i in range(2_000))
    with open("/dev/full", "w", encoding="utf-8", newline="") as full:
        with pytest.raises(CsvError, match=r"^<csv>: No space left on device; nothing was"):
            import_csv(store, io.StringIO(f"email\n{rows}", newline=""), rejects_out=full)
        with contextlib.suppress(OSError):  # what is still buffered cannot be written
            full.close()
    assert _count(store) == 0
