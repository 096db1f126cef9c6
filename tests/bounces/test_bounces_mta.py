"""End to end on the real servers: `mailer send` through Postfix, genuine DSNs into the bounce
Maildir, `mailer bounces` over a Maildir and over IMAPS, and the next issue skips the dead.

The bounce mailbox is shared with other tests: each test takes only the DSNs about its own
recipients (by a unique token in their addresses), copies them into a private Maildir or a
private IMAP folder, and removes its folders afterwards (the mailbox fixture removes the
DSNs it handed out).
"""

from __future__ import annotations

import email
import imaplib
import re
import shutil
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mailer.cli import app
from mailer.store.db import Store
from tests.bounces.helpers import Box, status_of, subscribe_unchecked
from tests.conftest import REPO, SAMPLE_ISSUE
from tests.mta import CA_FILE, MAILBOX_PASSWORD, ImapAccount, Mailbox, Postfix, SmtpSink, new_token

pytestmark = pytest.mark.timeout(240)  # a full send of the sample issue, and waiting for mail


def mailer(*args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


@pytest.fixture
def env(config_env: Path, store: Store, postfix: Postfix, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_LAYOUTS_DIR", str(REPO / "layouts"))
    monkeypatch.setenv("MAILER_SMTP_URL", postfix.smtp_url)
    monkeypatch.setenv("MAILER_SMTP_CA_FILE", str(CA_FILE))
    monkeypatch.setenv("MAILER_BOUNCE_ADDRESS", "mailer-bounces@localhost")
    return config_env


def next_issue(tmp_path: Path, number: int) -> Path:
    """A copy of the sample issue under another number."""
    folder = tmp_path / f"{number:03d}-next"
    shutil.copytree(SAMPLE_ISSUE, folder)
    manifest = folder / "issue.toml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(re.sub(r"(?m)^number = \d+", f"number = {number}", text), "utf-8")
    return folder


def dsns_for(box: Mailbox, addresses: list[str]) -> list[bytes]:
    """The DSN of each of ``addresses`` (they are unique to the test), as delivered."""
    found = []
    for address in addresses:

        def about(message: EmailMessage, address: str = address) -> bool:
            return message.get_content_type() == "multipart/report" and address in str(
                message.get_body(("plain",)) or ""
            )

        found.append(box.wait_for(about).raw)
    return found


def send_through_postfix(
    store: Store, token: str, sink: SmtpSink
) -> tuple[list[str], list[str], Result]:
    dead = [f"nosuch{token}{i}@localhost.localdomain" for i in range(3)]
    good = [sink.address(f"reader{i}+{token}") for i in range(2)]
    subscribe_unchecked(store, *dead, *good)
    sent = mailer("send", str(SAMPLE_ISSUE), "--yes")
    assert sent.exit_code == 0, sent.output
    assert "5 sent in" in sent.output
    return dead, good, sent


def test_postfix_dsns_bounce_the_dead_and_the_next_issue_skips_them(
    env: Path, store: Store, bounce_mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    token = new_token()
    dead, good, _ = send_through_postfix(store, token, smtp_sink)
    for address in good:
        smtp_sink.wait_for(lambda m, a=address: a in m.rcpt_to)
    raws = dsns_for(bounce_mailbox, dead)
    for raw in raws:  # genuine Postfix DSNs to each copy's own VERP address
        dsn = email.message_from_bytes(raw)
        assert re.fullmatch(r"mailer-bounces\+[a-z2-7]{40}@localhost", dsn["X-Original-To"])
    box = Box(tmp_path / "private")
    for raw in raws:
        box.put(raw)

    first = mailer("bounces", str(box.path))
    assert first.exit_code == 0, first.output
    assert "3 messages: 3 hard, 0 soft, 0 complaints" in first.output
    assert "subscribers changed: 3 bounced" in first.output
    assert [status_of(store, a) for a in dead] == ["bounced"] * 3
    assert [status_of(store, a) for a in good] == ["active"] * 2
    assert len(box.names("processed")) == 3 and box.names() == []

    for raw in raws:  # the same reports again: nothing changes
        box.put(raw)
    again = mailer("bounces", str(box.path))
    assert "0 hard" in again.output and "3 already processed" in again.output

    report = mailer("report", str(SAMPLE_ISSUE))
    assert (
        "hard bounces 3 (60.00%)" in report.output and "warning: hard-bounce rate" in report.output
    )

    second = mailer("send", str(next_issue(tmp_path, 26)), "--yes")
    assert second.exit_code == 0, second.output
    assert "First send: 2 active subscribers" in second.output


@pytest.fixture
def imap_folder(imap_account: ImapAccount) -> Iterator[Callable[[str], str]]:
    """``make(suffix)``: a private IMAP folder, deleted (with what it holds) afterwards."""
    made: list[str] = []
    base = f"t-{new_token()}"

    def make(suffix: str) -> str:
        name = f"{base}-{suffix}"
        made.append(name)
        return name

    yield make
    with imap_account.connect() as client:
        for name in made:
            client.delete(f'"{name}"')


def test_imaps_mailbox_moves_into_private_folders(
    env: Path,
    store: Store,
    bounce_mailbox: Mailbox,
    smtp_sink: SmtpSink,
    imap_account: ImapAccount,
    imap_folder: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = new_token()
    dead, _, _ = send_through_postfix(store, token, smtp_sink)
    raws = dsns_for(bounce_mailbox, dead)
    inbox, processed, unrecognised = imap_folder("in"), imap_folder("done"), imap_folder("look")
    with imap_account.connect() as client:
        assert client.create(f'"{inbox}"')[0] == "OK"
        for raw in [*raws, b"From: someone@example.net\r\nSubject: hello\r\n\r\nhi\r\n"]:
            assert (
                client.append(f'"{inbox}"', "", imaplib.Time2Internaldate(time.time()), raw)[0]
                == "OK"
            )
    monkeypatch.setenv("MAILER_BOUNCE_PROCESSED_FOLDER", processed)
    monkeypatch.setenv("MAILER_BOUNCE_UNRECOGNISED_FOLDER", unrecognised)
    monkeypatch.setenv("MAILER_BOUNCE_PASSWORD", MAILBOX_PASSWORD)
    url = f"imaps://{imap_account.user}@{imap_account.host}:{imap_account.ssl_port}/{inbox}"

    result = mailer("bounces", url)
    assert result.exit_code == 0, result.output
    assert "4 messages: 3 hard" in result.output and "1 unrecognised" in result.output
    assert MAILBOX_PASSWORD not in result.output
    assert [status_of(store, a) for a in dead] == ["bounced"] * 3
    with imap_account.connect() as client:
        counts = {}
        for name in (inbox, processed, unrecognised):
            status, data = client.select(f'"{name}"', readonly=True)
            counts[name] = int(data[0]) if status == "OK" else -1
    assert counts == {inbox: 0, processed: 3, unrecognised: 1}
    assert mailer("bounces", url).output.startswith(f"{url}: 0 messages")


def test_imap_errors_are_one_line_without_the_password(
    env: Path, store: Store, imap_account: ImapAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_BOUNCE_PASSWORD", "wrong-Secret-pa55")
    url = f"imaps://{imap_account.user}@{imap_account.host}/INBOX"
    wrong = mailer("bounces", url)
    assert wrong.exit_code == 1
    assert wrong.output.startswith(
        "error: imaps://mailer-bounces@127.0.0.1:993/INBOX: login refused"
    )
    assert "wrong-Secret-pa55" not in wrong.output and "Traceback" not in wrong.output

    monkeypatch.setenv("MAILER_BOUNCE_PASSWORD", MAILBOX_PASSWORD)
    missing = mailer("bounces", f"imaps://{imap_account.user}@{imap_account.host}/no-{new_token()}")
    assert missing.exit_code == 1 and "no such mailbox" in missing.output

    unreachable = mailer("bounces", f"imaps://{imap_account.user}@127.0.0.1:1/INBOX")
    assert unreachable.exit_code == 1
    assert unreachable.output.startswith("error: cannot reach imaps://mailer-bounces@127.0.0.1:1")

    monkeypatch.delenv("MAILER_BOUNCE_PASSWORD")
    unset = mailer("bounces", url)
    assert unset.exit_code == 1 and "set MAILER_BOUNCE_PASSWORD" in unset.output


def test_a_postfix_pipe_hands_one_dsn_on_standard_input(
    env: Path,
    store: Store,
    bounce_mailbox: Mailbox,
    smtp_sink: SmtpSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = new_token()
    dead, _, _ = send_through_postfix(store, token, smtp_sink)
    raws = dsns_for(bounce_mailbox, dead[:1])
    piped = mailer("bounces", "-", stdin=raws[0])
    assert piped.exit_code == 0, piped.output
    assert piped.output.strip() == "report: hard"
    assert status_of(store, dead[0]) == "bounced"
    assert mailer("bounces", "-", stdin=raws[0]).output.strip() == "report: already processed"

    keep = tmp_path / "keep"
    monkeypatch.setenv("MAILER_BOUNCE_UNRECOGNISED_DIR", str(keep))
    stranger = mailer("bounces", "-", stdin=b"Subject: hi\r\n\r\nnot a bounce\r\n")
    assert stranger.exit_code == 0 and "unrecognised" in stranger.output
    assert len(list((keep / "new").iterdir())) == 1

    monkeypatch.setenv("MAILER_DATABASE_URL", "postgresql+psycopg://nobody:pw@127.0.0.1:1/none")
    down = mailer("bounces", "-", stdin=raws[0])
    assert down.exit_code == 75, down.output
    assert "the MTA will try again" in down.output and ":pw@" not in down.output
