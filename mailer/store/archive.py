"""The web archive's view of the issues table: what has been sent, and its web version."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from mailer.errors import DatabaseUnavailable
from mailer.store.db import Store
from mailer.store.models import Issue, IssueState

# An issue is public from the moment its send starts: its first readers follow "view in
# browser" while the rest of the list is still being sent to.
_PUBLIC = (IssueState.SENDING, IssueState.SENT)


@dataclass(frozen=True)
class ArchivedIssue:
    slug: str
    number: int
    subject: str
    date: str  # ISO date from the issue's manifest
    published: dt.datetime  # when its send started
    updated: dt.datetime  # when it finished (or started, while sending)


def archived_issues(store: Store, limit: int | None = None) -> list[ArchivedIssue]:
    """Issues sent or being sent, newest first (by issue date, then number)."""
    query = (
        select(Issue.slug, Issue.number, Issue.subject, Issue.date, Issue.created_at, Issue.sent_at)
        .where(Issue.state.in_(_PUBLIC), Issue.number > 0)
        .order_by(Issue.date.desc(), Issue.number.desc())
        .limit(limit)
    )
    try:
        with store.session() as session:
            rows = session.execute(query).all()
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None
    return [
        ArchivedIssue(
            slug=row.slug,
            number=row.number,
            subject=row.subject,
            date=row.date,
            published=_aware(row.created_at),
            updated=_aware(row.sent_at or row.created_at),
        )
        for row in rows
    ]


def archived_web_html(store: Store, slug: str) -> str | None:
    """The web version of a sent issue, exactly as recorded; None if not public."""
    query = select(Issue.web_html).where(
        Issue.slug == slug, Issue.state.in_(_PUBLIC), Issue.number > 0
    )
    try:
        with store.session() as session:
            return session.scalar(query)
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None


def database_answers(store: Store) -> bool:
    """True when a ``SELECT 1`` succeeds (the load balancer's health check)."""
    try:
        with store.engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1
    except DBAPIError:
        return False


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
