"""What an unsubscribe link may do to its subscriber: look, unsubscribe, undo.

The web app calls these with the subscriber uid and issue number from a verified token. Every
status change goes through :mod:`mailer.store.status`, so the history keeps the first
unsubscribe (time, source, issue) and repeating one changes nothing.

A link may undo only what that same link did: the history's latest change must be its own
unsubscribe (a link source, the token's issue) of an address that was active. So an old link
never reactivates a bounced or complained address, nor undoes an operator's removal or the
unsubscribe another issue's link made.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select
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
    # Unsubscribed by this very link while active, so its resubscribe button may undo it.
    can_resubscribe: bool


def link_reason(issue_number: int) -> str:
    """The history's reason for an unsubscribe by the link of ``issue_number``.

    It names the issue number, which ``issue_id`` cannot for a test send's link (number 0)
    or an issue never recorded: both have no issues row.
    """
    return f"unsubscribe link of issue #{issue_number}"


@dataclass(frozen=True)
class _Change:
    """A status change as the history holds it (or as this transaction is writing it)."""

    old: str
    new: str
    source: str
    reason: str
    issue_id: int | None

    @classmethod
    def of(cls, change: StatusChange) -> _Change:
        return cls(change.old, change.new, change.source, change.reason, change.issue_id)

    def undoable_by(self, issue_number: int, issue_id: int | None) -> bool:
        """Whether the link of ``issue_number`` (whose issues row is ``issue_id``) made it."""
        return (
            self.new == SubscriberStatus.UNSUBSCRIBED
            and self.old == SubscriberStatus.ACTIVE
            and self.source in LINK_SOURCES
            and self.issue_id == issue_id
            and self.reason == link_reason(issue_number)
        )


_EVENTS = Base.metadata.tables["subscriber_events"]
# The latest change of each subscriber (ids only grow, and a row lock orders its changes).
_LATEST_CHANGES = select(
    _EVENTS.c.subscriber_id,
    _EVENTS.c.old_status,
    _EVENTS.c.new_status,
    _EVENTS.c.source,
    _EVENTS.c.reason,
    _EVENTS.c.issue_id,
).where(
    _EVENTS.c.id.in_(
        select(func.max(_EVENTS.c.id))
        .where(_EVENTS.c.subscriber_id.in_(bindparam("ids", expanding=True)))
        .group_by(_EVENTS.c.subscriber_id)
    )
)


def _latest_changes(connection: Connection, subscriber_ids: Sequence[int]) -> dict[int, _Change]:
    if not subscriber_ids:
        return {}
    rows = connection.execute(_LATEST_CHANGES, {"ids": list(subscriber_ids)})
    return {
        row.subscriber_id: _Change(
            row.old_status, row.new_status, row.source, row.reason, row.issue_id
        )
        for row in rows
    }


def _state(session: Session, subscriber: Subscriber, issue_number: int) -> LinkState:
    undoable = False
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        latest = _latest_changes(session.connection(), [subscriber.id]).get(subscriber.id)
        undoable = latest is not None and latest.undoable_by(
            issue_number, _issue_id(session, issue_number)
        )
    return LinkState(subscriber.email, subscriber.status, undoable)


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


def link_state(store: Store, uid: str, issue_number: int) -> LinkState | None:
    """The subscriber with ``uid`` as the link of ``issue_number`` sees it (None if unknown
    or forgotten); changes nothing."""
    try:
        with store.session() as session:
            subscriber = _find(session, uid)
            return None if subscriber is None else _state(session, subscriber, issue_number)
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
    order of ``requests``; a uid given twice is unsubscribed once (by the first).
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
            # Already unsubscribed (rare in a burst): whether each link may undo it.
            latest = _latest_changes(
                conn, [r.id for r in found.values() if r.status == SubscriberStatus.UNSUBSCRIBED]
            )
            states, changes = _plan_unsubscribes(requests, found, issue_ids, latest)
            change_statuses(conn, changes)
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None
    return states


def _plan_unsubscribes(
    requests: Sequence[LinkUnsubscribe],
    found: Mapping[str, Row[*tuple[Any, ...]]],
    issue_ids: Mapping[int, int],
    latest: dict[int, _Change],
) -> tuple[list[LinkState | None], list[StatusChange]]:
    """Each request's answer, and the changes to write (at most one per subscriber).

    ``latest`` (by subscriber id) starts as the history's latest change of those already
    unsubscribed and gains this batch's, so a uid's later requests see the first's change.
    """
    states: list[LinkState | None] = []
    changes: list[StatusChange] = []
    written: set[int] = set()
    for request in requests:
        row = found.get(request.uid)
        if row is None:
            states.append(None)
            continue
        issue_id = issue_ids.get(request.issue_number)
        status = (
            SubscriberStatus.UNSUBSCRIBED if row.id in written else SubscriberStatus(row.status)
        )
        if status not in _ALREADY_OFF:
            change = StatusChange(
                subscriber_id=row.id,
                old=status,
                new=SubscriberStatus.UNSUBSCRIBED,
                source=request.source,
                reason=link_reason(request.issue_number),
                issue_id=issue_id,
            )
            changes.append(change)
            written.add(row.id)
            latest[row.id] = _Change.of(change)
            status = SubscriberStatus.UNSUBSCRIBED
        undo = latest.get(row.id) if status == SubscriberStatus.UNSUBSCRIBED else None
        undoable = undo is not None and undo.undoable_by(request.issue_number, issue_id)
        states.append(LinkState(row.email, status, undoable))
    return states, changes


def resubscribe_by_link(store: Store, uid: str, issue_number: int) -> LinkState | None:
    """Undo the unsubscribe that the link of ``issue_number`` made; None if unknown.

    Anything else is left as it is (see the module's docstring): the caller tells active
    (done) from the rest (refused).
    """
    try:
        with _writing(store) as session:
            subscriber = _find(session, uid, lock=True)
            if subscriber is None:
                return None
            state = _state(session, subscriber, issue_number)
            if not state.can_resubscribe:
                return state
            change_status(
                session,
                subscriber,
                SubscriberStatus.ACTIVE,
                source=SOURCE_RESUBSCRIBE,
                reason=f"resubscribe button, link of issue #{issue_number}",
                issue_id=_issue_id(session, issue_number),
            )
            return LinkState(subscriber.email, subscriber.status, can_resubscribe=False)
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None
