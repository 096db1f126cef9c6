"""Subscriber status changes: the one place that writes ``status`` and its history."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailer.store.models import Subscriber, SubscriberEvent, SubscriberStatus, utcnow


def change_status(
    session: Session,
    subscriber: Subscriber,
    new: SubscriberStatus,
    *,
    source: str,
    reason: str = "",
    issue_id: int | None = None,
) -> bool:
    """Set ``subscriber``'s status and append the change to its history.

    Returns False (and records nothing) when the status is already ``new``, so repeated
    unsubscribes are idempotent and keep the first one's time and source.
    """
    old = subscriber.status
    if old == new:
        return False
    now = utcnow()
    subscriber.status = new
    subscriber.status_changed_at = now
    subscriber.status_source = source
    subscriber.status_reason = reason
    subscriber.status_issue_id = issue_id
    session.add(
        SubscriberEvent(
            subscriber=subscriber,
            at=now,
            old_status=old.value,
            new_status=new.value,
            source=source,
            reason=reason,
            issue_id=issue_id,
        )
    )
    return True
