"""`mailer bounces` and `mailer report` from the command line: output, errors, CSV."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mailer.cli import app
from mailer.config import Config, load_config
from mailer.store.db import Store
from tests.bounces.helpers import (
    BOUNCE_ADDRESS,
    Box,
    arf,
    bounce_config,
    dsn,
    send_issue,
    subscribe,
)


def mailer(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def cli(config_env: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_BOUNCE_ADDRESS", BOUNCE_ADDRESS)
    config = dataclasses.replace(
        load_config(), database_url=store.engine.url.render_as_string(False)
    )
    return bounce_config(config, config_env / "outbox")


def test_bounces_then_report_with_rates_warnings_and_csv(
    cli: Config, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers = [f"reader{i}@example.org" for i in range(10)]
    subscribe(store, *readers)
    copies = send_issue(store, cli, 1)
    box = Box(tmp_path / "box")
    box.put(dsn(copies[readers[0]]))
    box.put(dsn(copies[readers[1]], status="5.2.2", diagnostic="smtp; 552 5.2.2 full"))
    box.put(arf(copies[readers[2]]))
    box.put(b"Subject: hello\r\n\r\nnot a report\r\n")
    monkeypatch.setenv("MAILER_BOUNCE_MAILBOX", str(box.path))  # no argument: the setting

    result = mailer("bounces")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"{box.path}: 4 messages: 1 hard, 1 soft, 1 complaints, 0 policy, 0 ignored, "
        "1 unrecognised; 0 already processed"
    )
    assert "subscribers changed: 1 bounced, 1 complained" in result.output

    out = tmp_path / "report.csv"
    report = mailer("report", "issues/001-test", "--csv", str(out))
    assert report.exit_code == 0, report.output
    assert "hard bounces 1 (10.00%)" in report.output
    assert "complaints 1 (12.50%)" in report.output  # per delivered copy: 8
    assert "warning: complaint rate 12.50% is at or above 0.3 %" in report.output
    assert "warning: hard-bounce rate 10.00% is above 2 %" in report.output
    with out.open(encoding="utf-8", newline="") as fh:
        rows = {r["email"]: r for r in csv.DictReader(fh)}
    assert {e: (r["bounce"], r["bounce_status"]) for e, r in rows.items()} == {
        readers[0]: ("hard", "5.1.1"),
        readers[1]: ("soft", "5.2.2"),
        readers[2]: ("complaint", "abuse"),
    }


def test_bad_mailboxes_are_one_line_errors(cli: Config, tmp_path: Path) -> None:
    none = mailer("bounces")
    assert (
        none.exit_code == 1
        and none.output == "error: bounces: give a MAILBOX or set bounce_mailbox\n"
    )
    missing = mailer("bounces", str(tmp_path / "nowhere"))
    assert missing.output == f"error: bounce mailbox {tmp_path / 'nowhere'}: no such folder\n"
    (tmp_path / "plain").mkdir()
    plain = mailer("bounces", str(tmp_path / "plain"))
    assert plain.exit_code == 1 and "not a Maildir (needs cur/, new/, tmp/)" in plain.output
    pop = mailer("bounces", "pop3://user@host/INBOX")
    assert pop.exit_code == 1 and "pop3:// is not imap or imaps" in pop.output
    for result in (none, missing, plain, pop):
        assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a-long-bounce-local-part@example.org", "at most 23 characters"),
        ("bounces+x@example.org", "without '+'"),
        ("not an address", "is not an email address"),
    ],
)
def test_bounce_address_is_checked(
    config_env: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("MAILER_BOUNCE_ADDRESS", value)
    result = mailer("bounces", "-")  # even the pipe says why (and asks the MTA to retry)
    assert result.exit_code == 75 and f"bounce_address: {value!r}" in result.output
    assert message in result.output
