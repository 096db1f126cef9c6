"""Database URLs are printed with every credential hidden: the user part's password and
query parameters such as ``?password=``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailer.cli import app
from mailer.store.redact import redacted

SECRET = "S3CRET"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql+psycopg://u:{SECRET}@db:5432/news",
            "postgresql+psycopg://u:***@db:5432/news",
        ),
        (
            f"postgresql+psycopg://u@db/news?password={SECRET}&sslmode=require",
            "postgresql+psycopg://u@db/news?password=***&sslmode=require",
        ),
        (
            f"postgresql+psycopg://u@db/news?sslpassword={SECRET}&PassWord={SECRET}",
            "postgresql+psycopg://u@db/news?PassWord=***&sslpassword=***",
        ),
        (
            f"postgresql+psycopg://u:{SECRET}@db/news?auth_token={SECRET}&secret={SECRET}",
            "postgresql+psycopg://u:***@db/news?auth_token=***&secret=***",
        ),
        ("sqlite:////srv/news/subscribers.db", "sqlite:////srv/news/subscribers.db"),
        (f"not a url {SECRET}", "<unparseable database URL>"),
    ],
)
def test_every_credential_in_a_url_is_hidden(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_db_commands_never_print_a_password_given_in_the_query(
    config_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    unreachable = f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}"
    monkeypatch.setenv("MAILER_DATABASE_URL", unreachable)
    for args in (["db", "current"], ["db", "upgrade"], ["init"], ["subscribers", "count"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert "cannot open database postgresql+psycopg://u@127.0.0.1:1/db?password=***: " in (
            result.stderr
        )
        assert SECRET not in result.output
    if not database_url.startswith("postgresql"):
        return  # SQLite takes no password (and warns about a query it does not know)
    # A reachable server (trust authentication ignores the password): the success lines.
    monkeypatch.setenv("MAILER_DATABASE_URL", f"{database_url}&password={SECRET}")
    for args in (["init"], ["db", "upgrade"], ["db", "current"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "password=***" in result.stdout
        assert SECRET not in result.output
