"""Helpers for the send tests: small composed issues, subscribers, configs."""

from __future__ import annotations

import dataclasses
import datetime as dt

from send_smtp_server import SmtpServer

from mailer.compose.model import ComposedIssue, IssueMeta, PersonalTemplate, slot
from mailer.config import Config
from mailer.send.ports import IssueStore
from mailer.send.service import SendService
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues, SqlSubscriberLookup
from mailer.store.models import Subscriber, SubscriberStatus
from mailer.tokens import new_uid

HTML = (
    "<!doctype html><html><body><p>Dear {name},</p>\n"
    '<p>This is issue #{number}. <a href="{web}">View it in your browser</a>.</p>\n'
    "<p>" + "Democracy and the rule of law. " * 40 + "</p>\n"
    ".a line starting with a dot\n"
    '<p>Sent to {email}. <a href="{unsub}">Unsubscribe</a></p></body></html>\n'
)
TEXT = (
    "Dear {name},\n\nThis is issue #{number}. View it in your browser: {web}\n\n"
    + "Democracy and the rule of law. " * 40
    + "\n.\nSent to {email}. Unsubscribe: {unsub}\n"
)


def make_issue(
    slug: str = "025-may-2022",
    number: int = 25,
    subject: str = "Democracy in Uzbekistan #25",
    extra: str = "",
) -> ComposedIssue:
    """A small composed issue with every slot, built from real HTML and text."""
    values = {
        "name": slot("name"),
        "email": slot("email"),
        "unsub": slot("unsubscribe_url"),
        "web": slot("web_url"),
        "number": str(number),
    }
    html = HTML.format(**values) + extra
    text = TEXT.format(**values) + extra
    return ComposedIssue(
        meta=IssueMeta(slug, number, dt.date(2022, 5, 31), subject, "preheader"),
        html=PersonalTemplate.parse(html),
        text=PersonalTemplate.parse(text),
        web_html="<html>web version</html>",
        content_hash=f"hash-{slug}-{len(extra)}".ljust(64, "0"),
    )


def add_subscribers(
    store: Store, count: int, *, prefix: str = "reader", status: SubscriberStatus | None = None
) -> list[str]:
    emails = [f"{prefix}{i}@example.org" for i in range(count)]
    with store.session() as session, session.begin():
        session.add_all(
            Subscriber(
                uid=new_uid(),
                email=email,
                email_key=email.lower(),
                name=f"Reader {i}",
                status=status or SubscriberStatus.ACTIVE,
            )
            for i, email in enumerate(emails)
        )
    return emails


def with_server(config: Config, server: SmtpServer, **changes: object) -> Config:
    return dataclasses.replace(config, smtp_url=server.url(), **changes)  # type: ignore[arg-type]


def service(store: Store, config: Config, issues: IssueStore | None = None) -> SendService:
    """The send facade wired to ``store`` as the CLI wires it (``issues`` to replace its
    issue store)."""
    return SendService(issues or SqlIssues(store), SqlSubscriberLookup(store), config)
