"""The sign-up outbox, sent through a real SMTP server (aiosmtpd) from a real database.

The confirmation email's bytes (headers, link, DKIM, nothing a stranger typed), retries
while the server is down and after a restart, 4xx and 5xx replies, concurrent drainers,
leases, and the crash window's one duplicate.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from send_smtp_server import Faults, SmtpServer
from sqlalchemy import select, update

from mailer.config import Config
from mailer.errors import TransportError
from mailer.send.outbox import OutboxDrainer, backoff, run_once
from mailer.send.transport import Connection, Gate, Reply, Transport, transport_from_config
from mailer.store import subscribers
from mailer.store.consent import record_consent_text
from mailer.store.db import Store, open_store
from mailer.store.models import OutboxStatus, Signup, SignupMail, Subscriber
from mailer.store.signup_links import confirm_signup
from mailer.store.signup_outbox import SqlOutbox
from mailer.store.signups import SignupLimits, SignupRequest, record_signup
from mailer.tokens import read_signup_token, read_verp_token, signup_lookup_hash
from tests.web.test_web_serve import free_port

RULES = SignupLimits(100, timedelta(hours=1), 1000, timedelta(days=7))
SPAM = "Cheap pills at http://spam.example.net, click now"


def sign_up(store: Store, address: str, name: str = SPAM, ip: str = "203.0.113.1") -> None:
    consent = record_consent_text(store, "Yes, send me the newsletter.")
    signup = SignupRequest(address, address.lower(), name, "/subscribe", ip, consent)
    assert record_signup(store, signup, RULES).outcome == "queued"


def rows(store: Store) -> list[SignupMail]:
    with store.session() as session:
        return list(session.scalars(select(SignupMail).order_by(SignupMail.id)))


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def link_in(message: EmailMessage) -> str:
    text = message.get_body(("plain",))
    assert text is not None
    [url] = set(re.findall(r"https?://\S+/confirm/[A-Za-z0-9_-]+", text.get_content()))
    return url


def due_now(store: Store) -> None:
    """Skip the backoff: every pending row is due (as if its retry time had come)."""
    with store.session() as session, session.begin():
        session.execute(update(SignupMail).values(next_attempt_at=datetime.now(UTC)))


@pytest.fixture
def outbox_config(config: Config, smtp: SmtpServer) -> Config:
    return dataclasses.replace(config, smtp_url=smtp.url())


def test_the_confirmation_email_is_the_newsletters_words_and_the_link(
    store: Store, outbox_config: Config, smtp: SmtpServer
) -> None:
    sign_up(store, "Jane.Doe@example.org")
    summary = run_once(outbox_config, SqlOutbox(store))
    assert (summary.sent, summary.deferred, summary.failed) == (1, 0, 0)
    [(rcpt, raw)] = smtp.accepted
    assert rcpt == "Jane.Doe@example.org"
    message = parse(raw)
    assert message["To"] == "Jane.Doe@example.org"  # no display name: the name is the stranger's
    assert message["Subject"] == "Confirm your subscription to Democracy in Uzbekistan"
    assert message["From"] == "Democracy in Uzbekistan <newsletter@yuksalish.example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert "List-Unsubscribe" not in message and "List-Id" not in message
    assert message.get_content_type() == "multipart/alternative"
    # Nothing typed into the form is in the email (spam in the name field goes nowhere).
    for word in ("Cheap", "pills", "spam.example.net"):
        assert word.encode() not in raw
        assert all(word not in part.get_content() for part in message.iter_parts())  # type: ignore[attr-defined]
    url = link_in(message)
    html = message.get_body(("html",))
    assert html is not None and f'href="{url}"' in html.get_content()
    assert url.startswith(f"{outbox_config.base_url}/confirm/")
    nonce = read_signup_token(outbox_config.secret_keys(), url.rsplit("/", 1)[1])
    [row] = rows(store)
    assert (row.status, row.nonce, row.attempts) == (OutboxStatus.SENT, "", 1)
    assert row.message_id == message["Message-ID"] and row.last_reply.startswith("250")
    with store.session() as session:
        signup = session.scalars(select(Signup)).one()
        assert signup.token_hash == signup_lookup_hash(nonce)  # the link leads to the sign-up
    # Nothing more to send: a second run sends nothing.
    assert run_once(outbox_config, SqlOutbox(store)).sent == 0
    assert len(smtp.accepted) == 1
    # Lines: CRLF, under 78 octets (quoted-printable), no bare LF.
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_the_confirmation_email_is_dkim_signed(
    store: Store, outbox_config: Config, smtp: SmtpServer, tmp_path: Path
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "mail.key"
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    config = dataclasses.replace(
        outbox_config,
        dkim_key_file=str(key_file),
        dkim_selector="mail",
        dkim_domain="yuksalish.example.org",
    )
    sign_up(store, "signed@example.org")
    assert run_once(config, SqlOutbox(store)).sent == 1
    [(_, raw)] = smtp.accepted
    assert raw.startswith(b"DKIM-Signature: ")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail._domainkey.yuksalish.example.org."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    header = parse(raw)["DKIM-Signature"]
    assert "auto-submitted" in header.replace(" ", "").lower()


def test_the_server_down_during_a_signup_and_back_after_a_restart(
    store: Store, config: Config, smtp_factory: Callable[..., SmtpServer], database_url: str
) -> None:
    down = dataclasses.replace(config, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    sign_up(store, "patient@example.org")
    with pytest.raises(TransportError, match="cannot connect"):
        run_once(down, SqlOutbox(store))
    [row] = rows(store)
    assert (row.status, row.attempts, row.lease_owner) == (OutboxStatus.PENDING, 1, "")
    assert "cannot connect" in row.last_reply
    assert row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=backoff(1) - 5)
    # Not due yet: a run now touches nothing.
    assert run_once(down, SqlOutbox(store)).deferred == 0
    # "Restart": the process is gone; a new one opens the database, the server is back.
    store.close()
    server = smtp_factory()
    back = dataclasses.replace(config, smtp_url=server.url())
    restarted = open_store(database_url)
    due_now(restarted)
    assert run_once(back, SqlOutbox(restarted)).sent == 1
    assert run_once(back, SqlOutbox(restarted)).sent == 0
    assert server.recipients == ["patient@example.org"]
    [row] = rows(restarted)
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 2)
    restarted.close()


def test_a_4xx_is_retried_with_backoff_and_a_5xx_is_final(
    store: Store, config: Config, smtp_factory: Callable[..., SmtpServer]
) -> None:
    faults = Faults(defer={"later@example.org": 1}, reject={"nobody@example.org"})
    server = smtp_factory(faults=faults)
    config = dataclasses.replace(config, smtp_url=server.url())
    sign_up(store, "later@example.org")
    sign_up(store, "nobody@example.org")
    first = run_once(config, SqlOutbox(store))
    assert (first.sent, first.deferred, first.failed) == (0, 1, 1)
    later, nobody = rows(store)
    assert later.status == OutboxStatus.PENDING and later.last_reply.startswith("451")
    assert nobody.status == OutboxStatus.FAILED and nobody.last_reply.startswith("550")
    assert nobody.nonce == ""  # final: the link's nonce is gone
    due_now(store)
    assert run_once(config, SqlOutbox(store)).sent == 1
    assert server.recipients == ["later@example.org"]
    assert [backoff(n) for n in (1, 2, 3, 10, 20)] == [10, 20, 40, 1800, 1800]


def test_an_email_whose_link_expired_is_not_sent(
    store: Store, outbox_config: Config, smtp: SmtpServer
) -> None:
    sign_up(store, "slow@example.org")
    with store.session() as session, session.begin():
        session.execute(update(Signup).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    # The purge at the start of the run deletes the spent sign-up and its email with it.
    summary = run_once(outbox_config, SqlOutbox(store))
    assert (summary.sent, summary.purged) == (0, 1)
    assert smtp.accepted == [] and rows(store) == []


def test_concurrent_drainers_send_every_email_once(
    store: Store, outbox_config: Config, smtp: SmtpServer, database_url: str
) -> None:
    addresses = [f"reader{i}@example.org" for i in range(30)]
    for i, address in enumerate(addresses):
        sign_up(store, address, ip=f"198.51.100.{i}")
    stores = [open_store(database_url) for _ in range(3)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def drain(own: Store) -> None:
        barrier.wait()
        try:
            while run_once(outbox_config, SqlOutbox(own), limit=4).sent:
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for own in stores:
        own.close()
    assert errors == []
    assert sorted(smtp.recipients) == sorted(addresses)
    assert {row.status for row in rows(store)} == {OutboxStatus.SENT}


def test_a_lease_taken_over_is_never_sent_by_its_first_holder(
    store: Store, outbox_config: Config, smtp: SmtpServer
) -> None:
    sign_up(store, "lease@example.org")
    first = SqlOutbox(store)
    [slow] = first.claim(limit=5, lease_seconds=60)
    assert first.claim(limit=5, lease_seconds=60) == []  # leased: nobody else gets it
    with store.session() as session, session.begin():  # the slow holder's lease runs out
        session.execute(update(SignupMail).values(lease_until=datetime.now(UTC)))
    assert run_once(outbox_config, SqlOutbox(store)).sent == 1  # another drainer sends it
    # The first holder's outcome and lease are no longer its own: it changes nothing.
    assert not first.holds(slow, lease_seconds=60)
    first.failed(slow, "too late")
    [row] = rows(store)
    assert row.status == OutboxStatus.SENT
    assert len(smtp.accepted) == 1


class _DiesAfterTheReply:
    """A transport whose connection delivers, then 'loses power' before the outcome is
    committed (the only moment a duplicate can come from)."""

    def __init__(self, real: Transport) -> None:
        self.real = real

    def connect(self) -> Connection:
        real = self.real.connect()

        class Dying:
            def send(
                self, sender: str, rcpt: str, message: bytes, gate: Gate | None = None
            ) -> Reply:
                real.send(sender, rcpt, message, gate)
                raise KeyboardInterrupt  # killed between the 250 and the commit

            def close(self) -> None:
                real.close()

        return Dying()

    def describe(self) -> str:
        return "dying"


def test_a_drainer_killed_after_the_servers_250_sends_one_duplicate(
    store: Store, outbox_config: Config, smtp: SmtpServer
) -> None:
    sign_up(store, "twice@example.org")
    dying = _DiesAfterTheReply(transport_from_config(outbox_config))
    with pytest.raises(KeyboardInterrupt):
        run_once(outbox_config, SqlOutbox(store), transport=dying)
    [row] = rows(store)
    assert row.status == OutboxStatus.PENDING and row.lease_owner  # still leased
    assert run_once(outbox_config, SqlOutbox(store)).sent == 0  # until the lease ends
    with store.session() as session, session.begin():
        session.execute(update(SignupMail).values(lease_until=datetime.now(UTC)))
    assert run_once(outbox_config, SqlOutbox(store)).sent == 1
    first, second = (parse(raw) for _, raw in smtp.accepted)
    assert first["Message-ID"] == second["Message-ID"]  # a duplicate receivers can tell
    assert link_in(first) == link_in(second)


def test_the_drainer_thread_sends_within_a_second_of_being_woken(
    store: Store, outbox_config: Config, smtp: SmtpServer
) -> None:
    drainer = OutboxDrainer(outbox_config, SqlOutbox(store))
    drainer.start()
    try:
        sign_up(store, "quick@example.org")
        drainer.wake()
        deadline = time.monotonic() + 10
        while not smtp.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        drainer.stop()
    assert smtp.recipients == ["quick@example.org"]
    assert not drainer.is_alive()


def test_the_link_confirms_once_the_email_is_out(
    store: Store, outbox_config: Config, smtp: SmtpServer
) -> None:
    sign_up(store, "reader@example.org")
    run_once(outbox_config, SqlOutbox(store))
    [(_, raw)] = smtp.accepted
    token = link_in(parse(raw)).rsplit("/", 1)[1]
    nonce = read_signup_token(outbox_config.secret_keys(), token)
    done = confirm_signup(store, signup_lookup_hash(nonce))
    assert done is not None and done.email == "reader@example.org"


def test_with_verp_a_bounce_of_it_names_no_subscriber(
    store: Store, outbox_config: Config, smtp: SmtpServer
) -> None:
    """bounce_address set: the envelope is VERP as for issues, with a token whose uid is no
    subscriber's (drawn from the link), so `mailer bounces` knows it for ours and changes
    nobody."""
    config = dataclasses.replace(outbox_config, bounce_address="bounces@yuksalish.example.org")
    subscribers.add_subscriber(store, "verp@example.org")  # on the list, and signing up again
    sign_up(store, "verp@example.org")
    assert run_once(config, SqlOutbox(store)).sent == 1
    [sender] = smtp.handler.senders
    match = re.fullmatch(r"bounces\+([a-z2-7]{40})@yuksalish\.example\.org", sender)
    assert match, sender
    claims = read_verp_token(config.secret_keys(), match.group(1))
    assert claims.issue_number == 0
    with store.session() as session:
        uids = list(session.scalars(select(Subscriber.uid)))
    assert len(uids) == 1 and not uids[0].startswith(claims.uid_prefix)
