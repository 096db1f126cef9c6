"""Sign-up end to end without a browser: `mailer serve` as a process with its outbox thread,
an aiosmtpd sink, the CLI's `mailer outbox`, `mailer signups ...` and `subscribers show`.

The SMTP server is down during a sign-up and back later, with a restart of `mailer serve`
in between: the confirmation email arrives once.
"""

from __future__ import annotations

import csv
import email
import io
import re
import subprocess
import sys
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from mailer.cli import app
from mailer.config import load_config
from mailer.send.sink import Sink, start_sink
from mailer.store.consent import consent_hash
from mailer.tokens import FormStamp, make_form_stamp

from .test_web_serve import free_port, migrated, serve_env, serving, wait_until_up

pytestmark = pytest.mark.slow


def messages(maildir: Path) -> list[EmailMessage]:
    new = maildir / "new"
    found = []
    for path in sorted(new.iterdir()) if new.is_dir() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def wait_for_mail(maildir: Path, count: int, timeout: float) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = messages(maildir)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{len(messages(maildir))} emails in {maildir} after {timeout} s")


def confirm_link(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    [url] = re.findall(r"https?://\S+/confirm/\S+", body.get_content())
    return url


def post_signup(base: str, address: str, name: str = "") -> httpx2.Response:
    """What a person's browser posts: the form's fields with a stamp from a few seconds ago."""
    config = load_config()
    stamp = FormStamp(int(time.time()) - 5, "form", consent_hash(config.consent_text), "/subscribe")
    form = {
        "email": address,
        "name": name,
        "website": "",
        "stamp": make_form_stamp(config.secret_keys(), stamp),
    }
    return httpx2.post(f"{base}/subscribe", data=form)


@pytest.mark.timeout(120)  # two `mailer serve` start-ups and a 10 s retry
def test_server_down_during_a_signup_then_a_restart_then_back(
    config_env: Path, database_url: str, tmp_path: Path
) -> None:
    migrated(database_url)
    port, smtp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = serve_env(database_url)
    env.update(MAILER_BASE_URL=base, MAILER_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}")
    maildir = tmp_path / "maildir"
    with serving(config_env, env, port) as server:
        wait_until_up(f"{base}/healthz", server)
        answer = post_signup(base, "patient@example.org", "Pat")
        assert answer.status_code == 200 and "Check your inbox" in answer.text
        time.sleep(2)  # the outbox thread tries at once: nothing listens on smtp_port
    sink: Sink | None = None
    try:
        sink = start_sink("127.0.0.1", smtp_port, maildir)
        with serving(config_env, env, port) as server:  # a new process: nothing lost
            wait_until_up(f"{base}/healthz", server)
            [message] = wait_for_mail(maildir, 1, timeout=40)  # the retry is due after 10 s
            url = confirm_link(message)
            assert url.startswith(f"{base}/confirm/")
            page = httpx2.get(url)
            assert page.status_code == 200 and "Confirm" in page.text
            done = httpx2.post(url, data={"name": "Pat"})
            assert done.status_code == 200 and "Welcome" in done.text
            time.sleep(2)  # the outbox would send a duplicate now, if it ever did
        assert len(messages(maildir)) == 1
    finally:
        if sink is not None:
            sink.stop()

    cli = CliRunner()
    shown = cli.invoke(app, ["subscribers", "show", "patient@example.org"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "status:     active" in shown.output and "(signup: confirmed sign-up)" in shown.output
    consent = r"consent: +signed up \S+ \S+ UTC on /subscribe from 127\.0\.0\.1, confirmed"
    assert re.search(consent, shown.output)
    assert load_config().consent_text in shown.output
    exported = cli.invoke(app, ["subscribers", "export"], env=env)
    [row] = list(csv.DictReader(io.StringIO(exported.stdout, newline="")))
    assert (row["email"], row["consent_form"], row["consent_ip"]) == (
        "patient@example.org",
        "/subscribe",
        "127.0.0.1",
    )
    assert row["consent_text"] == load_config().consent_text
    assert row["consent_text_sha256"] == consent_hash(row["consent_text"])
    assert row["consent_signed_up_at"] < row["consent_confirmed_at"]


def test_mailer_outbox_and_signups_commands(
    config_env: Path, database_url: str, tmp_path: Path
) -> None:
    migrated(database_url)
    port, smtp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = serve_env(database_url)
    env.update(
        MAILER_BASE_URL=base,
        MAILER_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
        MAILER_SIGNUP_EMAILS_PER_HOUR="2",
    )
    maildir = tmp_path / "maildir"
    # The web app alone (--no-outbox): the emails wait for `mailer outbox`.
    process = subprocess.Popen(
        [sys.executable, "-m", "mailer", "serve", "--port", str(port), "--no-outbox"],
        cwd=config_env,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(f"{base}/healthz", process)
        for n in range(3):
            assert post_signup(base, f"reader{n}@example.org").status_code == 200
        time.sleep(1)
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert "reached signup_emails_per_hour" in output  # the operator's warning
    assert messages(maildir) == []
    cli = CliRunner()
    listed = cli.invoke(app, ["signups", "list"], env=env)
    states = [line.split("\t")[:2] for line in listed.stdout.splitlines()]
    assert states == [
        ["reader0@example.org", "mailing"],
        ["reader1@example.org", "mailing"],
        ["reader2@example.org", "held"],
    ]
    sink = start_sink("127.0.0.1", smtp_port, maildir)
    try:
        sent = cli.invoke(app, ["outbox"], env=env)
        assert sent.exit_code == 0, sent.output
        assert sent.stdout.startswith("sent 2, deferred 0, failed 0")
        resent = cli.invoke(app, ["signups", "resend"], env=env)
        assert resent.stdout.startswith("queued 1 confirmation emails")
        assert cli.invoke(app, ["outbox"], env=env).stdout.startswith("sent 1,")
        assert cli.invoke(app, ["outbox"], env=env).stdout.startswith("sent 0,")
    finally:
        sink.stop()
    assert sorted(str(m["To"]) for m in messages(maildir)) == [
        f"reader{n}@example.org" for n in range(3)
    ]
    listed = cli.invoke(app, ["signups", "list"], env=env)
    assert [line.split("\t")[1] for line in listed.stdout.splitlines()] == ["sent"] * 3
