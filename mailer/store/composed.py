"""The composed issue stored with the issue when its send starts, and read back.

A worker on another host (``mailer worker``) has no issue folder: it sends exactly what the
editor's ``mailer send`` composed, the parts personalisation fills (HTML and text with their
slots), the preheader, the web version and the content hash, read back here into the send's
own types (:class:`~mailer.send.ports.StoredIssue`).
"""

from __future__ import annotations

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from mailer.send.ports import DeliveryStatus, IssueFacts, IssueState, StoredIssue
from mailer.store.db import Store
from mailer.store.models import Delivery, Issue


def keep_composed(issue: Issue, facts: IssueFacts) -> None:
    """Write ``facts`` (content and composed parts) into ``issue`` (the caller commits)."""
    issue.subject = facts.subject
    issue.content_hash = facts.content_hash
    issue.web_html = facts.web_html
    issue.preheader = facts.preheader
    issue.html_template = facts.html
    issue.text_template = facts.text


def stored_of(issue: Issue) -> StoredIssue | None:
    """``issue`` as the send's StoredIssue; None when its parts were never stored (an issue
    whose send started before they were, and that no send has resumed since)."""
    if not issue.html_template:
        return None
    facts = IssueFacts(
        slug=issue.slug,
        number=issue.number,
        subject=issue.subject,
        date=issue.date,
        content_hash=issue.content_hash,
        web_html=issue.web_html,
        preheader=issue.preheader,
        html=issue.html_template,
        text=issue.text_template,
    )
    return StoredIssue(id=issue.id, facts=facts, state=issue.state, rate=issue.rate)


def find_stored(session: Session, slug: str) -> StoredIssue | None:
    issue = session.scalars(select(Issue).where(Issue.slug == slug)).one_or_none()
    return stored_of(issue) if issue is not None else None


def stored_issue(store: Store, slug: str) -> StoredIssue | None:
    """The composed issue ``slug`` as stored when its send started (None: not stored)."""
    with store.session() as session:
        return find_stored(session, slug)


def issues_to_send(store: Store, deferred_below: int) -> list[str]:
    """Slugs of the issues being sent, stored whole, with rows left to send (pending, or
    deferred tried fewer than ``deferred_below`` times): what a worker resumes."""
    open_rows = exists().where(
        Delivery.issue_id == Issue.id,
        or_(
            Delivery.status == DeliveryStatus.PENDING,
            and_(Delivery.status == DeliveryStatus.DEFERRED, Delivery.attempts < deferred_below),
        ),
    )
    query = (
        select(Issue.slug)
        .where(Issue.state == IssueState.SENDING, Issue.html_template != "", open_rows)
        .order_by(Issue.id)
    )
    with store.session() as session:
        return list(session.scalars(query))
