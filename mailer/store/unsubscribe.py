"""What an unsubscribe link may do to its subscriber: look, unsubscribe, undo.

The web app calls these with the subscriber uid and issue number from a verified token. Every
status change goes through :func:`mailer.store.status.change_status`, so the history keeps the
first unsubscribe (time, source, issue) and repeating one changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mailer.errors import DatabaseUnavailable
from mailer.store import db
from mailer.store.db import Store
from mailer.store.models import Base, Issue, Subscriber, SubscriberStatus
from mailer.store.status import StatusChange, change_status, change_statuses

SOURCE_PAGE = "web"  # the button on the unsubscribe page
SOURCE_ONE_CLICK = "one-click"  # RFC 8058 POST by the mail provider
SOURCE_RESUBSCRIBE = "web-resubscribe"  # the undo button after a link unsubscribe
# Unsubscribes a link may undo: only those made through the subscriber's own links, never an
# operator's removal, a bounce or a complaint.
LINK_SOURCES = frozenset({SOURCE_PAGE, SOURCE_ONE_CLICK})
# Statuses an unsubscribe leaves alone: already off the list by the subscriber's own wish.
_ALREADY_OFF = frozenset({SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.COMPLAINED})


@dataclass(frozen=True)
class LinkState:
    """A subscriber as an unsubscribe page may show it."""

    email: str
    status: SubscriberStatus
    # Unsubscribed through one of its own links, so the resubscribe button may undo it.
    can_resubscribe: bool


def _state(subscriber: Subscriber) -> LinkState:
    return LinkState(
        email=subscriber.email,
        status=subscriber.status,
        can_resubscribe=subscriber.status == SubscriberStatus.UNSUBSCRIBED
        and subscriber.status_source in LINK_SOURCES,
    )


@contextmanager
def _writing(store: Store) -> Iterator[Session]:
    """A transaction that holds the write lock before it reads the subscriber.

    Two clicks at once must not both see "active" and both record an unsubscribe: PostgreSQL
    locks the row (``FOR UPDATE`` in :func:`_find`); SQLite takes its database write lock up
    front (``BEGIN IMMEDIATE``, waiting up to the busy timeout for a running send's commit).
    """
    with store.session() as session, session.begin():
        if store.engine.dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        else:  # bounded like SQLite's busy timeout: a 503 rather than a hung request
            session.connection().exec_driver_sql(f"SET LOCAL lock_timeout = {db.LOCK_WAIT_MS:d}")
        yield session


def _find(session: Session, uid: str, *, lock: bool = False) -> Subscriber | None:
    query = select(Subscriber).where(Subscriber.uid == uid)
    if lock:  # PostgreSQL: serialise concurrent clicks on one subscriber (SQLite ignores it)
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def _issue_id(session: Session, issue_number: int) -> int | None:
    if issue_number <= 0:  # 0: a test send, never recorded as an issue
        return None
    return session.scalar(select(Issue.id).where(Issue.number == issue_number))


def link_state(store: Store, uid: str) -> LinkState | None:
    """The subscriber with ``uid`` (None if unknown or forgotten); changes nothing."""
    try:
        with store.session() as session:
            subscriber = _find(session, uid)
            return None if subscriber is None else _state(subscriber)
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None


@dataclass(frozen=True)
class LinkUnsubscribe:
    """One POST to an unsubscribe link, from its verified token."""

    uid: str
    issue_number: int
    source: str


def unsubscribe_by_link(
    store: Store, uid: str, issue_number: int, *, source: str
) -> LinkState | None:
    """Unsubscribe ``uid`` at once (committed on return); None if no such subscriber.

    Idempotent: an address already unsubscribed (or that complained) keeps its first record.
    """
    return unsubscribe_many(store, [LinkUnsubscribe(uid, issue_number, source)])[0]


_SUBSCRIBERS = Base.metadata.tables["subscribers"]
_LOCK_SUBSCRIBERS = (
    select(
        _SUBSCRIBERS.c.id,
        _SUBSCRIBERS.c.uid,
        _SUBSCRIBERS.c.email,
        _SUBSCRIBERS.c.status,
        _SUBSCRIBERS.c.status_source,
    )
    .where(_SUBSCRIBERS.c.uid.in_(bindparam("uids", expanding=True)))
    .order_by(_SUBSCRIBERS.c.id)  # one lock order for every writer: no deadlocks
    .with_for_update()
)
_ISSUES = Base.metadata.tables["issues"]
_ISSUE_IDS = select(_ISSUES.c.number, _ISSUES.c.id).where(
    _ISSUES.c.number.in_(bindparam("numbers", expanding=True))
)


def unsubscribe_many(store: Store, requests: Sequence[LinkUnsubscribe]) -> list[LinkState | None]:
    """:func:`unsubscribe_by_link` for many links in ONE transaction (group commit).

    The web app batches the POSTs that arrive while a transaction runs: one locked SELECT,
    one UPDATE and one INSERT for the lot instead of a commit per click (Core statements
    built once: this is the hot path of a burst of one-click POSTs). Results are in the
    order of ``requests``; a uid given twice is unsubscribed once.
    """
    uids = sorted({r.uid for r in requests})
    numbers = sorted({r.issue_number for r in requests if r.issue_number > 0})
    try:
        with store.engine.begin() as conn:
            if conn.dialect.name == "sqlite":  # see _writing
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:  # a row an import holds: wait as long as SQLite would, then a 503
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {db.LOCK_WAIT_MS:d}")
            found = {row.uid: row for row in conn.execute(_LOCK_SUBSCRIBERS, {"uids": uids})}
            issue_ids: dict[int, int] = {}
            if numbers:
                result = conn.execute(_ISSUE_IDS, {"numbers": numbers})
                issue_ids = {number: id_ for number, id_ in result.all()}
            states: dict[str, LinkState] = {}
            changes: list[StatusChange] = []
            for request in requests:
                row = found.get(request.uid)
                if row is None or request.uid in states:
                    continue
                status = SubscriberStatus(row.status)
                if status in _ALREADY_OFF:
                    states[request.uid] = LinkState(
                        row.email,
                        status,
                        status == SubscriberStatus.UNSUBSCRIBED
                        and row.status_source in LINK_SOURCES,
                    )
                    continue
                changes.append(
                    StatusChange(
                        subscriber_id=row.id,
                        old=status,
                        new=SubscriberStatus.UNSUBSCRIBED,
                        source=request.source,
                        reason=f"unsubscribe link of issue #{request.issue_number}",
                        issue_id=issue_ids.get(request.issue_number),
                    )
                )
                states[request.uid] = LinkState(
                    row.email,
                    SubscriberStatus.UNSUBSCRIBED,
                    can_resubscribe=request.source in LINK_SOURCES,
                )
            change_statuses(conn, changes)
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None
    return [states.get(r.uid) for r in requests]


def resubscribe_by_link(store: Store, uid: str, issue_number: int) -> LinkState | None:
    """Undo an unsubscribe made through this subscriber's own link; None if unknown.

    Any other status is left as it is: the caller tells active (done) from the rest (refused).
    """
    try:
        with _writing(store) as session:
            subscriber = _find(session, uid, lock=True)
            if subscriber is None:
                return None
            if _state(subscriber).can_resubscribe:
                change_status(
                    session,
                    subscriber,
                    SubscriberStatus.ACTIVE,
                    source=SOURCE_RESUBSCRIBE,
                    reason=f"resubscribe button, link of issue #{issue_number}",
                    issue_id=_issue_id(session, issue_number),
                )
            return _state(subscriber)
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None
