"""`mailer send`, `mailer report` and `mailer sink` through the command line."""

from __future__ import annotations

import csv
import mailbox
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from send_helpers import add_subscribers
from send_smtp_server import Certs, Faults, SmtpServer
from sqlalchemy import select
from typer.testing import CliRunner, Result

from mailer.cli import app
from mailer.store import db
from mailer.store.db import Store
from mailer.store.models import Delivery, Issue
from tests.conftest import REPO, SAMPLE_ISSUE

PASSWORD = "cli-Secret-pa55word"


@pytest.fixture
def cli_env(
    config_env: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> Callable[[SmtpServer | str], None]:
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_LAYOUTS_DIR", str(REPO / "layouts"))

    def use(server: SmtpServer | str) -> None:
        url = server if isinstance(server, str) else server.url()
        monkeypatch.setenv("MAILER_SMTP_URL", url)

    return use


def mailer(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_without_a_terminal_yes_is_required(
    cli_env: Callable[..., None], store: Store, smtp: SmtpServer
) -> None:
    cli_env(smtp)
    add_subscribers(store, 3)
    result = mailer("send", str(SAMPLE_ISSUE))
    assert result.exit_code == 1
    assert "First send: 3 active subscribers" in result.output
    assert "error: no terminal to confirm on: pass --yes to send" in result.output
    assert "Traceback" not in result.output
    assert smtp.recipients == []
    with store.session() as session:
        assert session.scalars(select(Issue)).all() == []  # nothing half-written


def test_send_resume_and_report(
    cli_env: Callable[..., None],
    store: Store,
    smtp_factory: Callable[..., SmtpServer],
    tmp_path: Path,
) -> None:
    server = smtp_factory(faults=Faults(reject={"reader2@example.org"}))
    cli_env(server)
    emails = add_subscribers(store, 6)
    result = mailer("send", str(SAMPLE_ISSUE), "--yes", "--connections", "2")
    assert result.exit_code == 0, result.output
    assert "5 sent in" in result.output and "1 bounced" in result.output
    assert Counter(server.recipients) == Counter(e for e in emails if e != "reader2@example.org")
    message = server.accepted[0][1]
    assert b"Subject: Democracy in Uzbekistan #25" in message
    assert len(message) > 50_000  # the real issue, not a stub

    again = mailer("send", str(SAMPLE_ISSUE), "--yes")
    assert again.exit_code == 0
    assert "Resuming: 5 already delivered, 0 to send" in again.output

    out = tmp_path / "problems.csv"
    report = mailer("report", str(SAMPLE_ISSUE), "--csv", str(out))
    assert report.exit_code == 0, report.output
    assert "sent 5" in report.output and "failed 1" in report.output
    assert "reader2@example.org" in report.output and "550 5.1.1" in report.output
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["email"], r["delivery_status"], r["subscriber_status"]) for r in rows] == [
        ("reader2@example.org", "failed", "bounced")
    ]
    assert rows[0]["last_reply"].startswith("550 5.1.1")
    unwritable = mailer("report", str(SAMPLE_ISSUE), "--csv", str(tmp_path / "no" / "x.csv"))
    assert unwritable.exit_code == 1
    assert unwritable.output.startswith(f"error: cannot write {tmp_path / 'no' / 'x.csv'}")


def test_a_test_copy_never_carries_another_subscribers_name_or_link(
    cli_env: Callable[..., None], store: Store, smtp: SmtpServer
) -> None:
    cli_env(smtp)
    add_subscribers(store, 2)  # Reader 0 and Reader 1: real people
    result = mailer("send", str(SAMPLE_ISSUE), "--to", "outsider@example.net")
    assert result.exit_code == 0, result.output
    assert "personalised as a made-up subscriber" in result.output
    copy = smtp.accepted[0][1]
    assert b"Reader 0" not in copy and b"reader0@example.org" not in copy
    # The recipient is a subscriber: the copy is theirs, with their own working link.
    result = mailer("send", str(SAMPLE_ISSUE), "--to", "READER1@example.org")
    assert result.exit_code == 0, result.output
    assert "personalised as reader1@example.org" in result.output
    assert b"Reader 1" in smtp.accepted[1][1]
    # --as someone unknown is an error, not a silent stand-in.
    result = mailer("send", str(SAMPLE_ISSUE), "--to", "x@example.net", "--as", "no@example.org")
    assert result.exit_code == 1 and "error: no subscriber no@example.org" in result.output
    assert len(smtp.accepted) == 2


def test_report_of_an_unsent_issue(cli_env: Callable[..., None], smtp: SmtpServer) -> None:
    cli_env(smtp)
    result = mailer("report", str(SAMPLE_ISSUE))
    assert result.exit_code == 1
    assert "error: issue 025-may-2022 has not been sent yet" in result.output


def test_test_send_and_dry_run(
    cli_env: Callable[..., None], store: Store, smtp: SmtpServer
) -> None:
    cli_env(smtp)
    add_subscribers(store, 4)
    result = mailer(
        "send", str(SAMPLE_ISSUE), "--to", "editor@example.org", "--as", "reader3@example.org"
    )
    assert result.exit_code == 0, result.output
    assert "personalised as reader3@example.org" in result.output
    assert "Not recorded" in result.output
    assert smtp.recipients == ["editor@example.org"]
    assert b"Subject: [TEST] Democracy" in smtp.accepted[0][1]
    assert b"Reader 3" in smtp.accepted[0][1]

    sessions = smtp.handler.sessions
    dry = mailer("send", str(SAMPLE_ISSUE), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "rendered 4 messages" in dry.output and "Nothing was sent or recorded" in dry.output
    assert smtp.handler.sessions == sessions and smtp.recipients == ["editor@example.org"]
    with store.session() as session:
        assert session.scalars(select(Issue)).all() == []
        assert session.scalars(select(Delivery)).all() == []


def test_a_changed_issue_is_refused_then_forced(
    cli_env: Callable[..., None], store: Store, smtp: SmtpServer, tmp_path: Path
) -> None:
    cli_env(smtp)
    add_subscribers(store, 2)
    issue = tmp_path / "issues" / "025-may-2022"
    shutil.copytree(SAMPLE_ISSUE, issue)
    assert mailer("send", str(issue), "--yes").exit_code == 0
    snippet = next(p for p in sorted(issue.glob("*.md")))
    snippet.write_text(snippet.read_text(encoding="utf-8") + "\nA late correction.\n")
    refused = mailer("send", str(issue), "--yes")
    assert refused.exit_code == 1
    assert "error: issue 025-may-2022 changed since its send started" in refused.output
    assert "--force" in refused.output
    forced = mailer("send", str(issue), "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert "Resuming: 2 already delivered, 0 to send" in forced.output
    assert len(smtp.recipients) == 2


def test_auth_failure_is_one_line_without_the_password(
    cli_env: Callable[..., None],
    store: Store,
    smtp_factory: Callable[..., SmtpServer],
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = smtp_factory(certs=certs, users={"editor": PASSWORD})
    cli_env(server.url("editor"))
    monkeypatch.setenv("MAILER_SMTP_CA_FILE", str(certs.cert))
    monkeypatch.setenv("MAILER_SMTP_PASSWORD", "not-" + PASSWORD)
    add_subscribers(store, 2)
    result = mailer("send", str(SAMPLE_ISSUE), "--yes")
    assert result.exit_code == 1
    assert "error: authentication as 'editor' at 127.0.0.1" in result.output
    assert PASSWORD not in result.output and "Traceback" not in result.output
    monkeypatch.setenv("MAILER_SMTP_PASSWORD", PASSWORD)
    resumed = mailer("send", str(SAMPLE_ISSUE), "--yes")
    assert resumed.exit_code == 0, resumed.output
    assert "Resuming: 0 already delivered, 2 to send" in resumed.output
    assert len(server.recipients) == 2


def test_a_user_without_password_is_a_config_error(
    cli_env: Callable[..., None], store: Store
) -> None:
    cli_env("smtp://editor@127.0.0.1:2525")
    add_subscribers(store, 1)
    result = mailer("send", str(SAMPLE_ISSUE), "--yes")
    assert result.exit_code == 1
    assert "error: smtp_url: user 'editor' needs a password: set MAILER_SMTP_PASSWORD" in (
        result.output
    )


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_sink_keeps_messages_and_stops_cleanly(
    cli_env: Callable[..., None], store: Store, config_env: Path, stop: signal.Signals
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sink = subprocess.Popen(
        [sys.executable, "-m", "mailer", "sink", "--port", "0", "--maildir", "inbox"],
        cwd=config_env,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None
        line = sink.stdout.readline()
        assert "Listening on smtp://127.0.0.1:" in line and str(config_env / "inbox") in line
        port = int(line.split("127.0.0.1:")[1].split(";")[0])
        cli_env(f"smtp://127.0.0.1:{port}")
        add_subscribers(store, 3)
        assert mailer("send", str(SAMPLE_ISSUE), "--yes").exit_code == 0
    finally:
        sink.send_signal(stop)
        out, err = sink.communicate(timeout=20)
    assert sink.returncode == 0, err
    assert "Stopped; 3 messages received." in out
    assert len(mailbox.Maildir(config_env / "inbox")) == 3


def test_a_locked_database_is_one_line_without_the_sql(
    cli_env: Callable[..., None],
    store: Store,
    smtp: SmtpServer,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """E.g. a long import holding SQLite's write lock: no driver traceback, SQL or addresses."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's database-wide write lock")
    cli_env(smtp)
    add_subscribers(store, 3)
    monkeypatch.setattr(db, "LOCK_WAIT_MS", 100)
    lock = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        result = mailer("send", str(SAMPLE_ISSUE), "--yes")
    finally:
        lock.close()
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # not an escaped driver exception
    assert result.output.splitlines()[-1].endswith("database is locked")
    assert "error: database sqlite:///" in result.output
    assert "INSERT" not in result.output and "reader0@" not in result.output
    assert smtp.recipients == []
    assert mailer("send", str(SAMPLE_ISSUE), "--yes").exit_code == 0  # and it resumes
    assert sorted(smtp.recipients) == [f"reader{i}@example.org" for i in range(3)]
