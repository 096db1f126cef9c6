"""What an import refuses in one line before it changes anything: its input as the rejects
file, a file that is not UTF-8, a column named twice, a full temporary folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mailer.cli import app
from mailer.errors import CsvError
from mailer.store.csv_import import import_file
from mailer.store.db import Store
from mailer.store.subscribers import count_by_status
from tests.full_disk import MODES, full_disk

LIST = "email,name\nok@example.org,Ok\nbroken,B\n"


@pytest.fixture
def cli(
    config_env: Path, database_url: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> CliRunner:
    monkeypatch.setenv("MAILER_DATABASE_URL", database_url)
    return CliRunner()


def _fails(result: Result, message: str) -> None:
    """One `error:` line naming the problem, exit 1, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {message}\n", result.stderr
    assert isinstance(result.exception, SystemExit)


def _total(store: Store) -> int:
    return sum(count_by_status(store).values())


def test_the_rejects_file_may_not_be_the_input(
    cli: CliRunner, config_env: Path, store: Store
) -> None:
    path = config_env / "r.csv"
    path.write_text(LIST, encoding="utf-8")
    (config_env / "link.csv").symlink_to(path)
    os.link(path, config_env / "hard.csv")
    for given, rejects in (("r.csv", "r.csv"), ("r.csv", "link.csv"), ("link.csv", "hard.csv")):
        _fails(
            cli.invoke(app, ["subscribers", "import", given, "--rejects", rejects]),
            f"cannot write the rejects to {rejects}: it is the file being imported ({given}); "
            "choose another name",
        )
    refused = pytest.raises(CsvError, match=r"it is the file being imported \(<stdin>\)")
    with path.open("rb") as stdin, refused:
        import_file(store, "-", rejects=path, stdin=stdin)
    assert path.read_text(encoding="utf-8") == LIST  # the list is intact, nothing imported
    assert _total(store) == 0
    ok = cli.invoke(app, ["subscribers", "import", "r.csv", "--rejects", "rejected.csv"])
    assert ok.exit_code == 0 and ok.stdout.startswith("added 1,")


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"], ids=lambda e: e
)
def test_a_utf16_file_is_named_not_read_as_garbage(
    cli: CliRunner, config_env: Path, store: Store, encoding: str
) -> None:
    # "utf-16" and "utf-32" write a byte order mark (Excel's "Unicode Text"); -le/-be none.
    (config_env / "excel.csv").write_bytes(LIST.encode(encoding))
    _fails(
        cli.invoke(app, ["subscribers", "import", "excel.csv"]),
        'excel.csv: not UTF-8 text but UTF-16 (or UTF-32): save it as UTF-8 (in Excel: "CSV '
        'UTF-8"), or convert it, e.g. with iconv -f UTF-16 -t UTF-8',
    )
    assert _total(store) == 0


def test_a_header_that_is_not_utf8_is_one_line(cli: CliRunner, config_env: Path) -> None:
    (config_env / "latin1.csv").write_bytes("email,société\na@example.org,x\n".encode("latin-1"))
    _fails(
        cli.invoke(app, ["subscribers", "import", "latin1.csv"]),
        "latin1.csv: line 1: the header row is not UTF-8 text; save it as UTF-8",
    )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "email,name,E-Mail",
            "the column 'email' twice ('email' in column 1, 'E-Mail' in column 3)",
        ),
        (
            "Email,Full Name,name",
            "the column 'name' twice ('Full Name' in column 2, 'name' in column 3)",
        ),
        ("email,org,org", "the column 'org' twice ('org' in column 2, 'org' in column 3)"),
        (
            "email,status,Status",
            "the column 'status' twice ('status' in column 2, 'Status' in column 3)",
        ),
    ],
)
def test_a_column_named_twice_is_refused(
    cli: CliRunner, config_env: Path, store: Store, header: str, message: str
) -> None:
    (config_env / "twice.csv").write_text(f"{header}\na@example.org,A,B\n", encoding="utf-8")
    _fails(
        cli.invoke(app, ["subscribers", "import", "twice.csv"]),
        f"twice.csv: the header row has {message}: remove or rename one",
    )
    assert _total(store) == 0
    # Attribute names are case-sensitive: "Org" and "org" are two attributes.
    (config_env / "two.csv").write_text("email,Org,org\na@example.org,A,B\n", encoding="utf-8")
    assert cli.invoke(app, ["subscribers", "import", "two.csv"]).exit_code == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_full_temporary_folder_is_named_not_the_database(
    config_env: Path, database_url: str, store: Store, mode: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("only SQLite's import stages the file in $TMPDIR")
    disk = full_disk(mode)
    (config_env / "big.csv").write_text(
        "email,name\n" + "".join(f"user{i}@example.org,User {i}\n" for i in range(5000)),
        encoding="utf-8",
    )
    tmp = config_env / "tmp"
    env = {**os.environ, "MAILER_DATABASE_URL": database_url, "TMPDIR": str(tmp)}
    done, left = disk.run(tmp, 400_000, "subscribers", "import", "big.csv", env=env)
    assert done.returncode == 1, done.stderr
    if mode == "tmpfs":
        reason = (
            f"the temporary folder {tmp} is full (an import stages the file there, about 650 "
            "bytes a row): free some space or set TMPDIR to a folder with more room"
        )
    else:  # SQLite reports a write beyond the size limit as an I/O error
        reason = f"cannot stage the import in the temporary folder {tmp}: disk I/O error"
    assert done.stderr == f"error: big.csv: {reason}; nothing was imported\n"
    assert left == []  # its working folder went with the failure
    assert _total(store) == 0


def test_a_trashed_sqlite_file_is_one_line(
    config_env: Path, database_url: str, store: Store
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a SQLite file's pages")
    path = Path(database_url.removeprefix("sqlite:///"))
    store.close()
    with sqlite3.connect(path) as db:
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'alembic_version'"
        ).fetchone()
        (page,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    with path.open("r+b") as fh:  # the header and the schema page stay valid
        fh.seek((root - 1) * page)
        fh.write(b"\xff" * page)
    env = {**os.environ, "MAILER_DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "mailer", "subscribers", "count"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"error: cannot open database {database_url}: database disk image is malformed\n"
    )
