"""The web archive's view of the issues table: what has been sent, and its web version."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, exists, select, text
from sqlalchemy.exc import DBAPIError

from mailer.errors import DatabaseUnavailable
from mailer.store.db import Store
from mailer.store.models import Base, DeliveryStatus, IssueState


@dataclass(frozen=True)
class ArchivedIssue:
    slug: str
    number: int
    subject: str
    date: str  # ISO date from the issue's manifest
    published: dt.datetime  # when its send started
    updated: dt.datetime  # when it finished (or started, while sending)


_ISSUES = Base.metadata.tables["issues"]
_DELIVERIES = Base.metadata.tables["deliveries"]
# An issue is public once a copy of it was delivered: its first readers follow "view in
# browser" while the rest of the list is still being sent to. Not before: a send that failed
# ahead of its first message (refused login, server down) has recorded the issue, but nobody
# has it, and the editor may still change it. A finished send is public even if no copy was
# delivered (an empty list, every address refused): the editor did publish it. Test sends
# (number 0) never are. The delivered check is an index probe (ix_deliveries_issue_status).
_DELIVERED = exists().where(
    _DELIVERIES.c.issue_id == _ISSUES.c.id,
    _DELIVERIES.c.status == DeliveryStatus.SENT.value,
)
_PUBLIC_ISSUES = (_ISSUES.c.number > 0) & ((_ISSUES.c.state == IssueState.SENT.value) | _DELIVERED)
# Core statements built once: the archive page is the app's most fetched.
_LIST = (
    select(
        _ISSUES.c.slug,
        _ISSUES.c.number,
        _ISSUES.c.subject,
        _ISSUES.c.date,
        _ISSUES.c.created_at,
        _ISSUES.c.sent_at,
    )
    .where(_PUBLIC_ISSUES)
    .order_by(_ISSUES.c.date.desc(), _ISSUES.c.number.desc())
)
_WEB_HTML = select(_ISSUES.c.web_html).where(_PUBLIC_ISSUES, _ISSUES.c.slug == bindparam("slug"))


def archived_issues(store: Store, limit: int | None = None) -> list[ArchivedIssue]:
    """The public issues (see ``_PUBLIC_ISSUES``), newest first (by issue date, then number)."""
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(_LIST if limit is None else _LIST.limit(limit)).all()
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
    """The web version of a public issue, exactly as recorded; None if not public."""
    try:
        with store.engine.connect() as conn:
            html: str | None = conn.execute(_WEB_HTML, {"slug": slug}).scalar()
            return html
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
