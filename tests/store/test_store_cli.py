"""`mailer init`, `mailer db ...` and `mailer subscribers ...` through typer's CliRunner."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from mailer.cli import app
from mailer.cli.subscribers import parse_attrs
from mailer.errors import InvalidAttribute
from mailer.store.db import create_db_engine
from mailer.store.schema import HEAD


@pytest.fixture
def cli(config_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner in a folder with mailer.toml, on the test database, already initialised."""
    monkeypatch.setenv("MAILER_DATABASE_URL", database_url)
    runner = CliRunner()
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert "created database" in result.output
    return runner


def run(runner: CliRunner, *args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


def _fails(result: Result, message: str) -> None:
    """One `error:` line, exit 1, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {message}\n" or (
        result.stderr.startswith("error: ") and message in result.stderr
    ), result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_init_creates_sqlite_next_to_config(
    config_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(config_env / "..")  # any cwd: the config's folder decides
    runner = CliRunner()
    before = runner.invoke(app, ["--config", str(config_env / "mailer.toml"), "db", "current"])
    assert before.exit_code == 1  # no schema yet: a deploy script sees it
    assert "(run `mailer db upgrade`)" in before.stdout
    args = ["--config", str(config_env / "mailer.toml"), "init"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    db = config_env / "subscribers.db"
    assert f"created database sqlite:///{db} (schema revision {HEAD})" in first.output
    assert db.exists()
    second = runner.invoke(app, args)
    assert f"is up to date (schema revision {HEAD})" in second.output
    current = runner.invoke(app, ["--config", str(config_env / "mailer.toml"), "db", "current"])
    assert current.stdout == f"sqlite:///{db}: revision {HEAD}; code needs {HEAD} (up to date)\n"
    assert current.exit_code == 0


def test_db_upgrade_and_current(cli: CliRunner) -> None:
    assert "is up to date" in run(cli, "db", "upgrade").stdout
    assert "(up to date)" in run(cli, "db", "current").stdout


def test_subscriber_commands(cli: CliRunner) -> None:
    assert (
        run(
            cli, "subscribers", "add", "Jane@Example.org", "--name", "Jane", "--attr", "org=ISEI"
        ).stdout
        == "added Jane@example.org\n"
    )
    _fails(run(cli, "subscribers", "add", "jane@example.org"), "already on the list")
    _fails(run(cli, "subscribers", "add", "nope"), "email: 'nope'")
    _fails(run(cli, "subscribers", "add", "x@example.org", "--attr", "org"), "expected key=value")
    run(cli, "subscribers", "add", "bob@example.org")
    out = run(cli, "subscribers", "unsubscribe", "BOB@example.org", "--reason", "by email")
    assert out.stdout == "unsubscribed bob@example.org\n"
    assert (
        "already unsubscribed" in run(cli, "subscribers", "unsubscribe", "bob@example.org").stdout
    )
    show = run(cli, "subscribers", "show", "bob@example.org").stdout
    assert "status:     unsubscribed" in show and "(cli: by email)" in show
    assert "active -> unsubscribed (cli: by email)" in show
    assert "org:        ISEI" in run(cli, "subscribers", "show", "jane@example.org").stdout
    assert run(cli, "subscribers", "list").stdout == (
        "Jane@example.org\tactive\tJane\nbob@example.org\tunsubscribed\t\n"
    )
    assert run(cli, "subscribers", "list", "--status", "active").stdout.count("\n") == 1
    count = run(cli, "subscribers", "count").stdout
    assert "active        1\nunsubscribed  1\n" in count and "total         2" in count
    assert run(cli, "subscribers", "resubscribe", "bob@example.org").stdout.startswith("resub")
    assert run(cli, "subscribers", "remove", "bob@example.org").stdout == (
        "removed bob@example.org\n"
    )
    _fails(run(cli, "subscribers", "show", "bob@example.org"), "bob@example.org: not on the list")
    forgot = run(cli, "subscribers", "forget", "jane@example.org").stdout
    assert forgot.startswith("forgot jane@example.org")
    _fails(run(cli, "subscribers", "add", "jane@example.org"), "was forgotten")
    assert run(cli, "subscribers", "add", "jane@example.org", "--force").exit_code == 0


def test_attr_options(cli: CliRunner) -> None:
    assert parse_attrs([" org =ISEI", "note=a=b", "empty="]) == {
        "org": "ISEI",
        "note": "a=b",
        "empty": "",
    }
    with pytest.raises(InvalidAttribute, match=r"^--attr 'org': expected key=value$"):
        parse_attrs(["org"])
    _fails(
        run(cli, "subscribers", "add", "x@example.org", "--attr", "Status=x"),
        "attribute 'Status': is a subscriber field, not an attribute",
    )
    assert "x@example.org" not in run(cli, "subscribers", "list").stdout


def test_import_and_export(cli: CliRunner, config_env: Path) -> None:
    path = config_env / "list.csv"
    path.write_text("email;name\nA@example.org;A\na@EXAMPLE.org;A2\nbroken;B\nb@example.org;B\n")
    result = run(cli, "subscribers", "import", str(path), "--rejects", "rejects.csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == "added 2, updated 0, unchanged 0, rejected 1, duplicates merged 1\n"
    assert result.stderr.startswith("line 4: email: 'broken'")
    with (config_env / "rejects.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["line", "reason", "email", "name"], ["4", rows[1][1], "broken", "B"]]
    stdin = run(cli, "subscribers", "import", "-", input="email\nc@example.org\n")
    assert stdin.stdout.startswith("added 1,")
    exported = run(cli, "subscribers", "export")
    assert exported.exit_code == 0
    lines = exported.stdout.splitlines()
    assert lines[0].startswith("uid,email,name,status,created_at")
    assert [line.split(",")[1] for line in lines[1:]] == [
        "A@example.org",
        "b@example.org",
        "c@example.org",
    ]
    out = run(cli, "subscribers", "export", "all.csv")
    assert out.stdout == "exported 3 subscribers to all.csv\n"
    again = run(cli, "subscribers", "import", "all.csv")
    assert again.stdout == "added 0, updated 0, unchanged 3, rejected 0\n"


def test_import_keeps_unsubscribes(cli: CliRunner) -> None:
    run(cli, "subscribers", "add", "u@example.org")
    run(cli, "subscribers", "unsubscribe", "u@example.org")
    result = run(cli, "subscribers", "import", "-", input="email\nu@example.org\n")
    assert "1 listed addresses stay unsubscribed" in result.stdout
    assert "unsubscribed" in run(cli, "subscribers", "show", "u@example.org").stdout
    result = run(cli, "subscribers", "import", "-", "--resubscribe", input="email\nu@example.org\n")
    assert "resubscribed 1 (logged with source 'import')" in result.stdout
    assert (
        "unsubscribed -> active (import: --resubscribe)"
        in run(cli, "subscribers", "show", "u@example.org").stdout
    )


def test_import_errors(cli: CliRunner, config_env: Path) -> None:
    _fails(
        run(cli, "subscribers", "import", "missing.csv"),
        "cannot read missing.csv: No such file or directory",
    )
    (config_env / "names.csv").write_text("name,org\nA,B\n")
    _fails(
        run(cli, "subscribers", "import", "names.csv"),
        "names.csv: the header row has no 'email' column (found 'name', 'org')",
    )
    # Nothing half-written: no rejects file from a failed import, no temporary left over.
    _fails(run(cli, "subscribers", "import", "names.csv", "--rejects", "r.csv"), "no 'email'")
    assert not [p for p in config_env.iterdir() if p.name.startswith(("r.csv", ".r.csv"))]
    _fails(
        run(cli, "subscribers", "import", "names.csv", "--rejects", "no/such/dir/r.csv"),
        "cannot write no/such/dir/r.csv",
    )
    _fails(run(cli, "subscribers", "export", "no/such/dir/out.csv"), "cannot write no/such/dir")


def test_newer_schema_is_refused(cli: CliRunner, database_url: str) -> None:
    engine = create_db_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'abcdef'"))
    engine.dispose()
    _fails(run(cli, "subscribers", "count"), "newer than this version of mailer")
    _fails(run(cli, "db", "upgrade"), "newer than this version of mailer")


def test_database_errors_are_one_line(config_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("MAILER_DATABASE_URL", "postgresql+psycopg://u:hunter2@127.0.0.1:1/db")
    for args in (["subscribers", "count"], ["db", "upgrade"], ["init"]):
        result = runner.invoke(app, args)
        _fails(result, "cannot open database postgresql+psycopg://u:***@127.0.0.1:1/db")
        assert "hunter2" not in result.output
    monkeypatch.setenv("MAILER_DATABASE_URL", f"sqlite:///{config_env}/no/such/dir/s.db")
    _fails(runner.invoke(app, ["subscribers", "list"]), "unable to open database file")
    monkeypatch.setenv("MAILER_DATABASE_URL", f"sqlite:///{config_env}/empty.db")
    _fails(runner.invoke(app, ["subscribers", "list"]), "run `mailer init`")


def test_database_failure_mid_command_is_one_line(cli: CliRunner, database_url: str) -> None:
    engine = create_db_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE subscribers RENAME TO subscribers_gone"))
    engine.dispose()
    result = run(cli, "subscribers", "count")
    _fails(result, "database ")
    assert "subscribers" in result.stderr
    assert "does not exist" in result.stderr or "no such table" in result.stderr
