"""The real mail servers of scripts/test-services, for tests: where they are, and fixtures.

Fixed values (tests/mta/env.py, read from scripts/test-services.env, which the script
sources too):

    Postfix   SMTP 127.0.0.1:25 (SMTP_HOST, SMTP_PORT), STARTTLS with a certificate for
              localhost and 127.0.0.1 signed by the test CA in CA_FILE. Unknown local users
              are accepted, then bounced: a genuine DSN goes to the envelope sender.
    Mailbox   MAILBOX_USER (``mailer-bounces``), ``recipient_delimiter = +``: mail (bounces
              above all) to ``mailer-bounces+TOKEN@localhost`` or to the alias
              ``bounces+TOKEN@localhost`` lands in MAILDIR, which Dovecot serves as INBOX.
    Dovecot   IMAP 127.0.0.1:143 (STARTTLS offered) and IMAPS :993, user MAILBOX_USER,
              password MAILBOX_PASSWORD, certificate verifiable with CA_FILE.
    Relaying  mail to ``pPORT.sink.test`` goes to 127.0.0.1:PORT for PORT in SINK_PORTS,
              where the ``smtp_sink`` fixture runs postfix's smtp-sink; any other domain
              is refused (550 5.7.1) at RCPT: nothing leaves the machine.

Fixtures (registered for every test by tests/conftest.py; a test using one is marked ``mta``):

    postfix              Postfix        send(raw, mail_from=, to=), flush(), smtp_url, ca_file
    bounce_mailbox       Mailbox        address(token), put(raw), wait_for(match),
                                        wait_for_token(token) -> Delivered
    smtp_sink_factory    start(*opts)   -> SmtpSink, started with smtp-sink options
    smtp_sink            SmtpSink       domain, address(local), wait_for(match) -> SinkMessage
    imap_account         ImapAccount    host, port, ssl_port, user, password, ca_file;
                                        connect(tls="implicit"|"starttls"|"none")
    imap                 IMAP4_SSL      logged in over verified IMAPS, logged out after
    spamassassin         SpamAssassin   check(raw, *local_cf_lines) -> SpamReport
    dkim_verifiers       verify_dkim_externally(raw, txt_record) -> ExternalDkim

A fixture skips its test when its server is not there, with the reason, unless
MAILER_REQUIRE_MTA=1 (set by .ci/run): then the test fails, since CI must have them.

The servers are shared by every test on the machine (xdist workers, other checkouts at
once): find your messages by a unique token or Message-ID, and remove only your own. The
mailbox fixture deletes, at teardown, every message it handed out or put.
"""

from __future__ import annotations

import functools
import imaplib
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mta import tools
from tests.mta.env import (
    CA_FILE,
    IMAP_PORT,
    IMAPS_PORT,
    MAILBOX_PASSWORD,
    MAILBOX_USER,
    MAILDIR,
    REQUIRE_ENV,
    SINK_PORTS,
    SMTP_BANNER,
    SMTP_HOST,
    SMTP_PORT,
    SMTP_SINK,
    new_token,
    parse,
    tls_context,
)
from tests.mta.servers import (
    Delivered,
    ImapAccount,
    Mailbox,
    Postfix,
    SinkMessage,
    SmtpSink,
    start_sink,
)
from tests.mta.tools import ExternalDkim, SpamAssassin, SpamReport, verify_dkim_externally

FIXTURES = frozenset(
    {
        "postfix",
        "bounce_mailbox",
        "smtp_sink_factory",
        "smtp_sink",
        "imap_account",
        "imap",
        "spamassassin",
        "dkim_verifiers",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The `mta` marker (declared in pyproject.toml) follows from the fixtures a test uses.
    for item in items:
        if FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mta)


def require(what: str, problem: str | None) -> None:
    """Skip (or, under MAILER_REQUIRE_MTA=1, fail) the test when ``problem`` is not None."""
    if problem is None:
        return
    reason = f"{what}: {problem} (scripts/test-services sets it up, as root)"
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason}; {REQUIRE_ENV} is set, so it may not be skipped", pytrace=False)
    pytest.skip(reason)


# -- what is there (asked once per test process) --------------------------------------------


@functools.cache
def postfix_problem() -> str | None:
    if not CA_FILE.is_file():
        return f"no test CA at {CA_FILE}"
    try:
        with socket.create_connection((SMTP_HOST, SMTP_PORT), timeout=3) as sock:
            banner = sock.recv(512).decode("ascii", "replace")
    except OSError as exc:
        return f"nothing answers on {SMTP_HOST}:{SMTP_PORT} ({exc.strerror or exc})"
    if SMTP_BANNER not in banner:
        return f"{SMTP_HOST}:{SMTP_PORT} is another SMTP server ({banner.strip()!r})"
    return None


@functools.cache
def mailbox_problem() -> str | None:
    if not all(os.access(MAILDIR / sub, os.R_OK | os.W_OK | os.X_OK) for sub in ("new", "cur")):
        return f"cannot read and write {MAILDIR} (run the tests as root)"
    return postfix_problem()


@functools.cache
def dovecot_problem() -> str | None:
    if not CA_FILE.is_file():
        return f"no test CA at {CA_FILE}"
    try:
        with (
            socket.create_connection((SMTP_HOST, IMAPS_PORT), timeout=3) as sock,
            tls_context().wrap_socket(sock, server_hostname=SMTP_HOST) as tls,
        ):
            greeting = tls.recv(512)
    except (OSError, ssl.SSLError) as exc:
        return f"no verified IMAPS on {SMTP_HOST}:{IMAPS_PORT} ({exc})"
    return None if greeting.startswith(b"* OK") else f"odd IMAP greeting {greeting!r}"


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def postfix() -> Postfix:
    require("Postfix", postfix_problem())
    return Postfix()


@pytest.fixture
def bounce_mailbox() -> Iterator[Mailbox]:
    require("the bounce Maildir", mailbox_problem())
    mailbox = Mailbox()
    yield mailbox
    mailbox.cleanup()


@pytest.fixture
def smtp_sink_factory(postfix: Postfix, tmp_path: Path) -> Iterator[Callable[..., SmtpSink]]:
    """``start(*options)``: an smtp-sink with those options (e.g. ``"-f", "RCPT"`` to refuse
    every recipient with a 5xx) on the first SINK_PORTS port no other test holds."""
    require("smtp-sink", None if os.access(SMTP_SINK, os.X_OK) else f"no {SMTP_SINK}")
    started: list[SmtpSink] = []

    def start(*options: str) -> SmtpSink:
        sink = start_sink(tmp_path / f"sink-{len(started)}", options)
        started.append(sink)
        postfix.flush()  # a destination that was down a moment ago is up now
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def smtp_sink(smtp_sink_factory: Callable[..., SmtpSink]) -> SmtpSink:
    return smtp_sink_factory()


@pytest.fixture
def imap_account() -> ImapAccount:
    require("Dovecot", dovecot_problem())
    return ImapAccount()


@pytest.fixture
def imap(imap_account: ImapAccount) -> Iterator[imaplib.IMAP4]:
    with imap_account.connect() as client:
        yield client


@pytest.fixture
def spamassassin() -> SpamAssassin:
    require("SpamAssassin", tools.spamassassin_problem())
    return SpamAssassin()


@pytest.fixture
def dkim_verifiers() -> Callable[..., ExternalDkim]:
    require("DKIM verifiers", tools.dkim_problem())
    return verify_dkim_externally


__all__ = [
    "CA_FILE",
    "IMAPS_PORT",
    "IMAP_PORT",
    "MAILBOX_PASSWORD",
    "MAILBOX_USER",
    "MAILDIR",
    "REQUIRE_ENV",
    "SINK_PORTS",
    "SMTP_HOST",
    "SMTP_PORT",
    "Delivered",
    "ExternalDkim",
    "ImapAccount",
    "Mailbox",
    "Postfix",
    "SinkMessage",
    "SmtpSink",
    "SpamAssassin",
    "SpamReport",
    "new_token",
    "parse",
    "require",
    "tls_context",
    "verify_dkim_externally",
]
