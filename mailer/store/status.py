"""Subscriber status changes: the one place that writes ``status`` and its history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, update
from sqlalchemy.orm import Session

from mailer.store.models import Base, Subscriber, SubscriberEvent, SubscriberStatus, utcnow


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


@dataclass(frozen=True)
class StatusChange:
    """One row of :func:`change_statuses`: ``old`` is the status the caller read (locked)."""

    subscriber_id: int
    old: SubscriberStatus
    new: SubscriberStatus
    source: str
    reason: str = ""
    issue_id: int | None = None


_SUBSCRIBERS = Base.metadata.tables["subscribers"]
_EVENTS = Base.metadata.tables["subscriber_events"]
_SET_STATUS = (
    update(_SUBSCRIBERS)
    .where(_SUBSCRIBERS.c.id == bindparam("subscriber_id"))
    .values(
        status=bindparam("new_status"),
        status_changed_at=bindparam("at"),
        status_source=bindparam("source"),
        status_reason=bindparam("reason"),
        status_issue_id=bindparam("issue_id"),
        updated_at=bindparam("at"),
    )
)
_ADD_EVENT = insert(_EVENTS)


def change_statuses(connection: Connection, changes: Sequence[StatusChange]) -> None:
    """What :func:`change_status` does, for many subscribers in two statements.

    For hot paths (the web app's batched one-click unsubscribes): one executemany UPDATE and
    one multi-row INSERT into the history, as Core statements built once. The caller has read
    each ``old`` in this transaction, under a lock, and left out changes that change nothing.
    """
    if not changes:
        return
    now = utcnow()
    rows = [
        {
            "subscriber_id": c.subscriber_id,
            "at": now,
            "old_status": c.old.value,
            "new_status": c.new.value,
            "source": c.source,
            "reason": c.reason,
            "issue_id": c.issue_id,
        }
        for c in changes
    ]
    connection.execute(_SET_STATUS, rows)
    connection.execute(_ADD_EVENT, rows)
