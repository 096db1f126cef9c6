"""Sending the sign-up outbox: confirmation emails, within seconds, exactly once (almost).

The web app writes a sign-up and its outbox row in one transaction and answers; this module
sends what the outbox holds (:func:`run_once`), through the same transport, settings and DKIM
key as issues. :class:`OutboxDrainer` runs it in a thread of `mailer serve`, about once a
second and whenever the web app wakes it; `mailer outbox` runs it once; any number of
drainers may run at once on several hosts (the outbox's claims are leases, see
:mod:`mailer.store.signup_outbox`).

Failures: a 4xx reply or an unreachable server puts the email back with exponential backoff
(:func:`backoff`), until the link would have expired; a 5xx is final. A process restart loses
nothing: the rows are in the database, and leased ones are free again when the lease ends.

The crash window follows the send ledger's rule (:mod:`mailer.send.run`): a drainer sends one
email at a time and commits its outcome before the next email's final dot, and it renews
its lease right before each final dot (an email whose lease another drainer took is
abandoned unsent). So a drainer killed between the server's 250 and that commit is the only
way to send an email twice: at most one duplicate per killed drainer, sent again when its
lease (:data:`LEASE_SECONDS`) ends, with the same Message-ID.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from mailer.compose.confirmation import render_confirmation
from mailer.compose.model import Newsletter
from mailer.config import Config
from mailer.errors import InvalidAddress, MailerError, TransportError
from mailer.send.dkim_signing import DkimSigner
from mailer.send.headers import smtp_address, unstructured, with_phrase
from mailer.send.message import dkim_signer, qp_encode
from mailer.send.ports import Outbox, OutboxMail
from mailer.send.transport import Connection, Transport, transport_from_config
from mailer.tokens import make_signup_token, make_verp_token

log = logging.getLogger("mailer.outbox")

LEASE_SECONDS = 120.0  # a claimed email's lease, renewed right before its final dot
BATCH = 20  # emails claimed at once by one drainer
INTERVAL = 1.0  # seconds between two runs of the drainer thread (unless woken)
FIRST_RETRY = 10.0  # seconds before the first retry, doubled each time
MAX_RETRY = 1800.0


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try (10 s, 20 s, ... 30 min)."""
    return float(min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY))


class LeaseLost(Exception):
    """Another drainer holds the email now: abandon it before the final dot."""


@dataclass
class OutboxSummary:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    purged: int = 0  # expired sign-ups deleted


class ConfirmationFactory:
    """Builds confirmation emails as SMTP-ready bytes (CRLF, quoted-printable, signed), with
    the header helpers of issues (:mod:`mailer.send.headers`)."""

    def __init__(self, config: Config, signer: DkimSigner | None = None) -> None:
        self.config = config
        self.newsletter = Newsletter.from_config(config)
        self.keys = config.secret_keys()
        self.signer = signer
        self.envelope_from = smtp_address(config.sender)
        bounce = smtp_address(config.bounce_address) if config.bounce_address else ""
        local, _, domain = bounce.rpartition("@")
        self._verp = (f"{local}+", f"@{domain}") if bounce else None
        from_address = smtp_address(config.from_address)
        self._msgid_domain = from_address.rpartition("@")[2]
        static = [with_phrase("From", config.from_name, from_address)]
        names = ["From", "Date", "Message-ID", "To", "Subject", "MIME-Version"]
        if config.reply_to:
            static.append(f"Reply-To: {smtp_address(config.reply_to)}\r\n".encode())
            names.append("Reply-To")
        # RFC 3834: a message a program sends on its own is auto-generated; vacation
        # responders and the like leave it unanswered.
        static += [b"MIME-Version: 1.0\r\n", b"Auto-Submitted: auto-generated\r\n"]
        self._static = b"".join(static)
        # Over-signed as issues are (RFC 6376 8.15): each name once more than present.
        names += ["Auto-Submitted", "Content-Type"]
        self._signed = [name for name in names for _ in range(2)]

    def confirm_url(self, mail: OutboxMail) -> str:
        return f"{self.config.base_url}/confirm/{make_signup_token(self.keys, mail.nonce)}"

    def message_id(self, mail: OutboxMail) -> str:
        """The same for every try of one email, so a resent copy can be told a duplicate."""
        digest = hashlib.sha256(b"mailer-signup-message-id\0" + mail.nonce).hexdigest()[:32]
        return f"<signup.{digest}@{self._msgid_domain}>"

    def envelope_for(self, mail: OutboxMail) -> str:
        """VERP, when bounce_address is set, as for issues: a token for no subscriber (its uid
        is drawn from the link's nonce, issue 0), so `mailer bounces` knows a bounce of it
        for ours and changes nobody."""
        if self._verp is None:
            return self.envelope_from
        uid = hashlib.sha256(b"mailer-signup-verp\0" + mail.nonce).hexdigest()[:32]
        return self._verp[0] + make_verp_token(self.keys, uid, 0) + self._verp[1]

    def build(self, mail: OutboxMail, now: datetime) -> bytes:
        """The email; InvalidAddress when its address cannot be sent to."""
        to = smtp_address(mail.to)
        days = max(1, math.ceil((mail.expires_at - now) / timedelta(days=1)))
        email = render_confirmation(self.newsletter, self.confirm_url(mail), days)
        boundary = "=_mailer_" + secrets.token_hex(12)
        head = b"".join(
            (
                f"Date: {format_datetime(now.astimezone(UTC))}\r\n".encode(),
                f"Message-ID: {self.message_id(mail)}\r\n".encode(),
                with_phrase("To", "", to),  # no name: it is what a stranger may have typed
                unstructured("Subject", email.subject),
                self._static,
                f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'.encode(),
            )
        )
        part = (
            "--{}\r\nContent-Type: text/{}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        body = b"".join(
            (
                part.format(boundary, "plain").encode(),
                qp_encode(email.text),
                b"\r\n" + part.format(boundary, "html").encode(),
                qp_encode(email.html),
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        if self.signer is not None:
            signature = self.signer.signature(head, hashlib.sha256(body).digest(), self._signed)
            head = signature + head
        return head + b"\r\n" + body


def run_once(
    config: Config,
    outbox: Outbox,
    *,
    transport: Transport | None = None,
    limit: int = BATCH,
) -> OutboxSummary:
    """Purge expired sign-ups, then send the emails due now (up to ``limit``).

    Safe to run from several processes at once; meant to run about every second (the web
    app's sign-ups wait for it) or at least every minute.
    """
    summary = OutboxSummary(purged=outbox.purge())
    if not outbox.due():
        return summary
    mails = outbox.claim(limit=limit, lease_seconds=LEASE_SECONDS)
    if not mails:
        return summary
    factory = ConfirmationFactory(config, dkim_signer(config))
    connection = (transport or transport_from_config(config)).connect()
    try:
        for index, mail in enumerate(mails):
            try:
                _send_one(outbox, factory, connection, mail, summary)
            except (TransportError, MailerError) as exc:
                # The server cannot be used (or the layout or key is broken): every email
                # left in the batch waits for the next try, and the caller hears why.
                for waiting in mails[index:]:
                    _defer(outbox, waiting, str(exc), summary)
                raise
    finally:
        connection.close()
    return summary


def _send_one(
    outbox: Outbox,
    factory: ConfirmationFactory,
    connection: Connection,
    mail: OutboxMail,
    summary: OutboxSummary,
) -> None:
    now = datetime.now(UTC)
    if mail.expires_at <= now:
        outbox.failed(mail, "not sent: the link expired first")
        summary.failed += 1
        return
    try:
        message, rcpt = factory.build(mail, now), smtp_address(mail.to)
    except InvalidAddress as exc:
        outbox.failed(mail, str(exc))
        summary.failed += 1
        return

    def gate() -> None:
        if not outbox.holds(mail, lease_seconds=LEASE_SECONDS):
            raise LeaseLost

    try:
        reply = connection.send(factory.envelope_for(mail), rcpt, message, gate)
    except LeaseLost:
        log.info("outbox email %d: taken over by another drainer", mail.id)
        return
    if reply.outcome == "sent":
        outbox.sent(mail, str(reply), factory.message_id(mail))
        summary.sent += 1
    elif reply.outcome == "deferred":
        _defer(outbox, mail, str(reply), summary)
    else:
        outbox.failed(mail, str(reply))
        summary.failed += 1


def _defer(outbox: Outbox, mail: OutboxMail, reply: str, summary: OutboxSummary) -> None:
    at = datetime.now(UTC) + timedelta(seconds=backoff(mail.attempts + 1))
    if at >= mail.expires_at:
        outbox.failed(mail, f"not sent before the link expired: {reply}")
        summary.failed += 1
    else:
        outbox.retry(mail, reply, at)
        summary.deferred += 1


class OutboxDrainer(threading.Thread):
    """:func:`run_once` every :data:`INTERVAL` seconds, or at once when woken (a sign-up just
    queued an email), until stopped. Errors are logged and the loop goes on."""

    def __init__(self, config: Config, outbox: Outbox, transport: Transport | None = None) -> None:
        super().__init__(name="mailer-outbox", daemon=True)
        self.config, self.outbox, self.transport = config, outbox, transport
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        failing = ""
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                summary = run_once(self.config, self.outbox, transport=self.transport)
            except MailerError as exc:
                if str(exc) != failing:  # once per distinct failure, not every second
                    log.warning("outbox: %s (will retry)", exc)
                failing = str(exc)
            except Exception:  # a database hiccup: log it and keep going
                log.exception("outbox: unexpected error (will retry)")
            else:
                if failing and summary.sent:
                    log.warning("outbox: sending again")
                    failing = ""
            self._wake.wait(INTERVAL)
