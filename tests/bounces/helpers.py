"""Real sent copies and the reports that come back for them, for the bounce tests.

Copies are made by a real send (``mailer.send`` through the ``maildir:`` transport, which
keeps each copy with its ``Return-Path``, i.e. the VERP envelope sender), so a report built
around one carries exactly what a real MTA would return: our Message-ID, List-Unsubscribe
token and Return-Path. The report shapes follow RFC 3464 (DSN), RFC 5965 (ARF) and RFC 3834
(auto-replies), and qmail's and Exim's text bounces.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import mailbox
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import cast

from sqlalchemy import select

from mailer.bounces.job import process
from mailer.bounces.process import Summary
from mailer.compose.model import ComposedIssue, IssueMeta, PersonalTemplate, slot
from mailer.config import Config
from mailer.send.run import SendOptions
from mailer.send.service import SendService
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues, SqlSubscriberLookup
from mailer.store.models import Delivery, Subscriber, SubscriberEvent, SubscriberStatus
from mailer.store.subscribers import add_subscriber
from mailer.tokens import new_uid

BOUNCE_ADDRESS = "bounces@news.example.org"


def make_issue(number: int) -> ComposedIssue:
    values = {"name": slot("name"), "unsub": slot("unsubscribe_url"), "web": slot("web_url")}
    html = "<p>Dear {name}, issue #{n}. <a href='{web}'>web</a> <a href='{unsub}'>stop</a></p>"
    text = "Dear {name}, issue #{n}: {web}\nUnsubscribe: {unsub}\n"
    return ComposedIssue(
        meta=IssueMeta(f"{number:03d}-test", number, dt.date(2026, 12, 1), f"Issue {number}", ""),
        html=PersonalTemplate.parse(html.format(n=number, **values)),
        text=PersonalTemplate.parse(text.format(n=number, **values)),
        web_html="<html>web</html>",
        content_hash=f"hash-{number}".ljust(64, "0"),
    )


@dataclass(frozen=True)
class Copy:
    """One copy as the subscriber's server got it."""

    email: str
    envelope_from: str
    raw: bytes  # CRLF, as on the wire, without the Return-Path line
    message: EmailMessage


def bounce_config(config: Config, outbox: Path, **changes: object) -> Config:
    return dataclasses.replace(
        config,
        smtp_url=f"maildir:{outbox}",
        bounce_address=BOUNCE_ADDRESS,
        **changes,  # type: ignore[arg-type]
    )


def send_issue(store: Store, config: Config, number: int) -> dict[str, Copy]:
    """Send issue ``number`` to every active subscriber (config's smtp_url is a maildir:);
    return the copies it wrote, by recipient."""
    outbox = Path(config.smtp_url.removeprefix("maildir:"))
    before = set(mailbox.Maildir(outbox, create=True).keys())
    service = SendService(SqlIssues(store), SqlSubscriberLookup(store), config)
    service.send(make_issue(number), SendOptions(connections=1))
    copies = {}
    box = mailbox.Maildir(outbox)
    for key in set(box.keys()) - before:
        raw = box.get_bytes(key)
        head, _, rest = raw.partition(b"\n")
        envelope = head.decode().removeprefix("Return-Path: <").rstrip(">\r")
        rest = rest.partition(b"\n")[2]  # the Delivered-To line
        parsed = cast(EmailMessage, email.message_from_bytes(rest, policy=email.policy.default))
        to = str(parsed["To"]).rpartition("<")[2].rstrip(">")
        copies[to] = Copy(to, envelope, rest, parsed)
    return copies


def subscribe(store: Store, *emails: str) -> None:
    for address in emails:
        add_subscriber(store, address)


def subscribe_unchecked(store: Store, *emails: str) -> None:
    """Add rows directly, as the send tests do: test domains (``.test``, ``localdomain``)
    that the address check refuses, but that the test MTA routes."""
    with store.session() as session, session.begin():
        session.add_all(
            Subscriber(uid=new_uid(), email=address, email_key=address.lower(), name="")
            for address in emails
        )


def status_of(store: Store, address: str) -> str:
    with store.session() as session:
        found = session.scalar(select(Subscriber.status).where(Subscriber.email == address))
    return str(SubscriberStatus(found).value) if found else ""


def history(store: Store, address: str) -> list[tuple[str, str, str]]:
    with store.session() as session:
        rows = session.execute(
            select(SubscriberEvent.old_status, SubscriberEvent.new_status, SubscriberEvent.reason)
            .join(Subscriber, Subscriber.id == SubscriberEvent.subscriber_id)
            .where(Subscriber.email == address)
            .order_by(SubscriberEvent.id)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def delivery_bounces(store: Store, address: str) -> list[tuple[str, str]]:
    """(bounce, bounce_status) of every delivery to ``address``, oldest issue first."""
    with store.session() as session:
        rows = session.execute(
            select(Delivery.bounce, Delivery.bounce_status)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Subscriber.email == address)
            .order_by(Delivery.issue_id)
        ).all()
    return [(r[0], r[1]) for r in rows]


# --- the mailbox ---------------------------------------------------------------------------


class Box:
    """A private Maildir standing for the bounce mailbox."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.maildir = mailbox.Maildir(path, create=True)

    def put(self, raw: bytes) -> str:
        return self.maildir.add(raw)

    def names(self, folder: str = "") -> list[str]:
        root = self.path / f".{folder}" if folder else self.path
        return sorted(p.name for sub in ("new", "cur") for p in (root / sub).glob("*"))

    def run(self, store: Store, config: Config) -> Summary:
        return process(config, store, str(self.path))


# --- reports -------------------------------------------------------------------------------


def _head(to: str, subject: str, content_type: str, sender: str) -> str:
    return (
        "Return-Path: <>\r\n"
        f"Delivered-To: {to}\r\n"
        f"From: Mail Delivery System <{sender}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@mx.example.net>\r\n"
        "Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={content_type}; boundary="BOUNDARY"\r\n'
        "\r\n"
    )


def _parts(*parts: tuple[str, str]) -> str:
    body = "".join(f"--BOUNDARY\r\nContent-Type: {ct}\r\n\r\n{text}\r\n" for ct, text in parts)
    return body + "--BOUNDARY--\r\n"


def _returned(copy: Copy, returned: str) -> list[tuple[str, str]]:
    full = f"Return-Path: <{copy.envelope_from}>\r\n" + copy.raw.decode("utf-8", "replace")
    if returned == "headers":
        return [("text/rfc822-headers", full.partition("\r\n\r\n")[0] + "\r\n")]
    if returned == "message":
        return [("message/rfc822", full)]
    return []


def dsn(
    copy: Copy,
    *,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    to: str | None = None,
    returned: str = "headers",  # "headers", "message" or "none"
    recipients: list[tuple[str, str, str, str]] | None = None,  # (rcpt, action, status, diag)
) -> bytes:
    """An RFC 3464 DSN about ``copy``, delivered to ``to`` (default: its envelope sender)."""
    blocks = ["Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Tue, 1 Dec 2026 10:00 +0000\r\n"]
    for rcpt, act, st, diag in recipients or [(copy.email, action, status, diagnostic)]:
        diag_line = f"Diagnostic-Code: {diag.format(rcpt=rcpt)}\r\n" if diag else ""
        blocks.append(
            f"Final-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{rcpt}\r\n"
            f"Action: {act}\r\nStatus: {st}\r\nRemote-MTA: dns; mx.example.net\r\n{diag_line}"
        )
    text = "This is the mail system at host mx.example.net.\r\n\r\nYour message could not be "
    text += "delivered to one or more recipients.\r\n"
    head = _head(
        to or copy.envelope_from,
        "Undelivered Mail Returned to Sender",
        "delivery-status",
        "MAILER-DAEMON@mx.example.net",
    )
    body = _parts(
        ("text/plain", text),
        ("message/delivery-status", "\r\n".join(blocks)),
        *_returned(copy, returned),
    )
    return (head + body).encode()


def arf(
    copy: Copy,
    *,
    feedback_type: str = "abuse",
    redacted: bool = True,
    to: str = BOUNCE_ADDRESS,
    returned: str = "message",
) -> bytes:
    """An RFC 5965 feedback report about ``copy``, with the recipient redacted as mailbox
    providers do, delivered to the plain bounce address (feedback loops mail the address
    they were told, not the VERP one)."""
    rcpt = "redacted@example.net" if redacted else copy.email
    fields = (
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{'redacted' if redacted else copy.envelope_from}>\r\n"
        f"Original-Rcpt-To: <{rcpt}>\r\nReported-Domain: example.net\r\n"
    )
    shown = dataclasses.replace(copy, raw=copy.raw.replace(copy.email.encode(), rcpt.encode()))
    head = _head(to, "Complaint about message from 192.0.2.1", "feedback-report", "fbl@example.net")
    head = head.replace("Auto-Submitted: auto-replied\r\n", "")
    body = _parts(
        ("text/plain", "This is an email abuse report for a message from 192.0.2.1.\r\n"),
        ("message/feedback-report", fields),
        *_returned(shown, returned),
    )
    return (head + body).encode()


def auto_reply(copy: Copy, *, to: str | None = None) -> bytes:
    """An RFC 3834 out-of-office reply to ``copy`` (it quotes our Message-ID)."""
    reply = EmailMessage()
    reply["From"] = copy.email
    reply["To"] = to or copy.envelope_from
    reply["Delivered-To"] = to or copy.envelope_from
    reply["Subject"] = "Out of Office: " + str(copy.message["Subject"])
    reply["Auto-Submitted"] = "auto-replied"
    reply["In-Reply-To"] = str(copy.message["Message-ID"])
    reply["Message-ID"] = f"<{secrets.token_hex(8)}@example.org>"
    reply.set_content("I am out of the office until Monday.\n")
    return reply.as_bytes(policy=email.policy.SMTP)


def qmail_bounce(
    copy: Copy, reason: str = "Sorry, no mailbox here by that name. (#5.1.1)"
) -> bytes:
    """qmail's text bounce, the original message inline."""
    text = (
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<{copy.email}>:\n{reason}\n\n"
        "--- Below this line is a copy of the message.\n\n"
        f"Return-Path: <{copy.envelope_from}>\n"
        + copy.raw.decode("utf-8", "replace").replace("\r\n", "\n")
    )
    report = EmailMessage()
    report["From"] = "MAILER-DAEMON@mx.example.net"
    report["To"] = copy.envelope_from
    report["Delivered-To"] = copy.envelope_from
    report["Subject"] = "failure notice"
    report.set_content(text, cte="8bit")
    return report.as_bytes(policy=email.policy.SMTP)
