"""Rows and tokens for the web tests, written with the models (the store's own API later)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from mailer.config import Config
from mailer.store import subscribers
from mailer.store.db import Store
from mailer.store.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueState,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
)
from mailer.tokens import make_token, new_uid


def add_subscriber(
    store: Store, email: str, status: SubscriberStatus = SubscriberStatus.ACTIVE
) -> Subscriber:
    """A subscriber added as `mailer subscribers add` does, then given ``status``."""
    subscriber = subscribers.add_subscriber(store, email)
    if status != SubscriberStatus.ACTIVE:
        subscriber, _ = subscribers.set_status(store, email, status, source="test")
    return subscriber


def raw_subscriber(store: Store, email: str) -> Subscriber:
    """A row the store's validation would refuse (to test the pages' escaping)."""
    with store.session() as session, session.begin():
        subscriber = Subscriber(uid=new_uid(), email=email, email_key=email.lower())
        session.add(subscriber)
    return subscriber


def add_issue(
    store: Store,
    number: int,
    *,
    subject: str = "",
    date: str = "2022-05-05",
    state: IssueState = IssueState.SENT,
    web_html: str = "<!doctype html><p>web version</p>",
) -> Issue:
    with store.session() as session, session.begin():
        now = dt.datetime.now(dt.UTC)
        issue = Issue(
            slug=f"{number:03d}-issue",
            number=number,
            subject=subject or f"Issue {number}",
            date=date,
            content_hash="0" * 64,
            state=state,
            web_html=web_html,
            sent_at=now if state == IssueState.SENT else None,
        )
        session.add(issue)
    return issue


def token_for(config: Config, subscriber: Subscriber, issue_number: int = 25) -> str:
    return make_token(config.secret_keys(), subscriber.uid, issue_number)


def reload(store: Store, subscriber: Subscriber) -> Subscriber:
    with store.session() as session:
        return session.scalars(select(Subscriber).where(Subscriber.id == subscriber.id)).one()


def events(store: Store, subscriber: Subscriber) -> list[SubscriberEvent]:
    with store.session() as session:
        query = (
            select(SubscriberEvent)
            .where(SubscriberEvent.subscriber_id == subscriber.id)
            .order_by(SubscriberEvent.id)
        )
        return list(session.scalars(query))


def count_events(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(SubscriberEvent)) or 0


def add_deliveries(store: Store, issue: Issue, *statuses: DeliveryStatus) -> None:
    """Ledger rows of ``issue``, one per status, each to a new subscriber."""
    with store.session() as session, session.begin():
        for n, status in enumerate(statuses):
            subscriber = Subscriber(
                uid=new_uid(),
                email=f"reader{issue.number}-{n}@example.org",
                email_key=f"reader{issue.number}-{n}@example.org",
            )
            session.add(subscriber)
            session.flush()
            session.add(Delivery(issue_id=issue.id, subscriber_id=subscriber.id, status=status))
