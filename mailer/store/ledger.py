"""The send ledger in SQL: the store's adapters for the send's ports (:mod:`mailer.send.ports`).

One class per port: :class:`SqlIssues` (issues as recorded when their send starts),
:class:`SqlLedger` (one row per recipient of one issue) and :class:`SqlSubscriberLookup`
(whom a test copy is personalised as). Each read or write is one short transaction, so a
send never holds a write lock across network I/O and the web app can unsubscribe people
while a send runs. The delivery report is in :mod:`mailer.store.report`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Table,
    and_,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from mailer.errors import NotFound, SendError
from mailer.send.ports import (
    DeliveryResult,
    DeliveryStatus,
    IssueFacts,
    IssueRecord,
    IssueState,
    LedgerRow,
    Recipient,
    StoredIssue,
    check_content,
)
from mailer.store.addresses import lookup_key
from mailer.store.composed import keep_composed, stored_issue
from mailer.store.db import Store
from mailer.store.models import Delivery, Issue, Subscriber, SubscriberStatus, utcnow
from mailer.store.status import change_status

_deliveries = cast(Table, Delivery.__table__)
_subscribers = cast(Table, Subscriber.__table__)


def _record(issue: Issue) -> IssueRecord:
    return IssueRecord(
        id=issue.id,
        slug=issue.slug,
        number=issue.number,
        subject=issue.subject,
        content_hash=issue.content_hash,
        state=issue.state,
    )


class SqlIssues:
    """:class:`~mailer.send.ports.IssueStore` in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, slug: str) -> IssueRecord | None:
        with self.store.session() as session:
            issue = session.scalars(select(Issue).where(Issue.slug == slug)).one_or_none()
            return _record(issue) if issue else None

    def start(self, facts: IssueFacts, *, force: bool) -> tuple[IssueRecord, int]:
        """Record the issue and snapshot its recipients, atomically; return (record, snapshotted).

        The first call inserts the issue row and one pending delivery per active subscriber
        in the same transaction (INSERT ... SELECT), so the ledger either exists whole or not
        at all. Later calls (a resume) only check the content hash and snapshot nothing (0).
        """
        with self.store.session() as session, session.begin():
            issue = session.scalars(select(Issue).where(Issue.slug == facts.slug)).one_or_none()
            if issue is not None:
                check_content(_record(issue), facts, force=force)
                # A forced new version, or an issue started before the parts were stored.
                if issue.content_hash != facts.content_hash or not issue.html_template:
                    keep_composed(issue, facts)
                return _record(issue), 0
            issue = _new_issue(session, facts)
            session.execute(_snapshot(issue.id))
            # (rowcount of INSERT ... SELECT is not reliable on every driver: count instead)
            snapshotted = session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue.id)
            )
            return _record(issue), int(snapshotted or 0)

    def count_active(self) -> int:
        with self.store.session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Subscriber)
                    .where(Subscriber.status == SubscriberStatus.ACTIVE)
                )
                or 0
            )

    def active_rows(self, *, after_id: int, limit: int) -> list[LedgerRow]:
        with self.store.session() as session:
            rows = session.execute(
                select(Subscriber.id, Subscriber.uid, Subscriber.email, Subscriber.name)
                .where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id > after_id)
                .order_by(Subscriber.id)
                .limit(limit)
            ).all()
        return [LedgerRow(r[0], r[0], r[1], r[2], r[3] or "", True, 0) for r in rows]

    def ledger(self, issue_id: int) -> SqlLedger:
        return SqlLedger(self.store, issue_id)

    def stored(self, slug: str) -> StoredIssue | None:
        return stored_issue(self.store, slug)


def _new_issue(session: Session, facts: IssueFacts) -> Issue:
    clash = session.scalars(select(Issue).where(Issue.number == facts.number)).one_or_none()
    if clash is not None:
        raise SendError(
            f"issue number {facts.number} is already used by issue {clash.slug}; "
            f"give {facts.slug} another number"
        )
    issue = Issue(slug=facts.slug, number=facts.number, date=facts.date, state=IssueState.SENDING)
    keep_composed(issue, facts)
    session.add(issue)
    session.flush()
    return issue


def _snapshot(issue_id: int) -> Insert:
    """INSERT ... SELECT of one pending delivery per active subscriber."""
    now = utcnow()
    active = select(
        literal(issue_id),
        _subscribers.c.id,
        literal(DeliveryStatus.PENDING.value),
        literal(0),
        literal(""),
        literal(""),
        literal(now, type_=_deliveries.c.updated_at.type),
    ).where(_subscribers.c.status == SubscriberStatus.ACTIVE.value)
    columns = [
        "issue_id",
        "subscriber_id",
        "status",
        "attempts",
        "last_reply",
        "message_id",
        "updated_at",
    ]
    return insert(_deliveries).from_select(columns, active)


def _to_send(issue_id: int, deferred_below: int) -> ColumnElement[bool]:
    """Rows a run sends: pending ones, and deferred ones tried fewer than ``deferred_below``
    times (a run killed during its 4xx backoff resumes them; ``--retry`` lifts the bound)."""
    return and_(
        _deliveries.c.issue_id == issue_id,
        or_(
            _deliveries.c.status == DeliveryStatus.PENDING.value,
            and_(
                _deliveries.c.status == DeliveryStatus.DEFERRED.value,
                _deliveries.c.attempts < deferred_below,
            ),
        ),
    )


class SqlLedger:
    """:class:`~mailer.send.ports.Ledger` of one issue in a :class:`Store`.

    Reads take a pooled session each. Writes (:meth:`record`) go through one long-lived
    connection, one transaction per group: the hot path of a fast send is this commit,
    several hundred times a second, and keeping the connection (no pool checkout, no ORM
    session unless a bounce needs one) makes it cheap.
    """

    def __init__(self, store: Store, issue_id: int) -> None:
        self.store = store
        self.issue_id = issue_id
        self._conn: Connection | None = None
        self._sql = ""
        self._mark = "?"
        self._to_db: Callable[[datetime], object] = lambda value: value
        self._fence: tuple[str, ...] = ()  # extra WHERE values of each update (a claim)

    def next_rows(self, *, deferred_below: int, after_id: int, limit: int) -> list[LedgerRow]:
        with self.store.session() as session:
            rows = session.execute(
                select(
                    _deliveries.c.id,
                    _deliveries.c.subscriber_id,
                    _subscribers.c.uid,
                    _subscribers.c.email,
                    _subscribers.c.name,
                    _subscribers.c.status,
                    _deliveries.c.attempts,
                )
                .join(_subscribers, _subscribers.c.id == _deliveries.c.subscriber_id)
                .where(_to_send(self.issue_id, deferred_below), _deliveries.c.id > after_id)
                .order_by(_deliveries.c.id)
                .limit(limit)
            ).all()
        return [
            LedgerRow(
                delivery_id=r[0],
                subscriber_id=r[1],
                uid=r[2],
                email=r[3],
                name=r[4] or "",
                active=r[5] == SubscriberStatus.ACTIVE.value,
                attempts=r[6],
            )
            for r in rows
        ]

    def count_to_send(self, deferred_below: int) -> int:
        with self.store.session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(_deliveries)
                    .where(_to_send(self.issue_id, deferred_below))
                )
                or 0
            )

    def still_active(self, subscriber_ids: Sequence[int]) -> set[int]:
        if not subscriber_ids:
            return set()
        with self.store.session() as session:
            return set(
                session.scalars(
                    select(Subscriber.id).where(
                        Subscriber.id.in_(subscriber_ids),
                        Subscriber.status == SubscriberStatus.ACTIVE,
                    )
                )
            )

    def record(self, results: Sequence[DeliveryResult], check: Sequence[int] = ()) -> set[int]:
        if not results and not check:
            return set()
        if self._conn is None:
            self._open()
        conn = self._conn
        assert conn is not None
        # Values in the driver's own form, converted once per group: the executemany below
        # bypasses SQLAlchemy's per-row type processing (most of this loop's cost).
        now = self._to_db(utcnow())
        fence = self._fence
        rows = [
            (
                r.status.value,
                1 if r.attempted else 0,
                r.reply[:2000],
                r.message_id,
                now if r.status is DeliveryStatus.SENT else None,
                now,
                r.delivery_id,
                *fence,
            )
            for r in results
        ]
        # On the driver's own cursor: SQLAlchemy's statement machinery costs ~100 us a
        # statement here, more than the statement itself, twice a message at full speed.
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        try:
            cursor = dbapi.cursor()
            try:
                if rows:
                    cursor.executemany(self._sql, rows)
                if any(r.bounced for r in results):
                    conn.begin()  # the session joins this transaction (and leaves it open)
                    with Session(bind=conn) as session:
                        _bounce(session, self.issue_id, results)
                        session.flush()
                # After the writes: SQLite's snapshot starts at this transaction's first
                # statement, PostgreSQL's (read committed) at this one; both after the call.
                active = self._active(cursor, check) if check else set()
            finally:
                cursor.close()
            if conn.in_transaction():  # begun for a bounce
                conn.commit()
            else:
                dbapi.commit()
        except BaseException:
            try:
                if conn.in_transaction():
                    conn.rollback()
                else:
                    dbapi.rollback()
            except Exception:
                # The connection is gone (server restart, terminated): never hand it back
                # to the pool, whose reset would fail again and log a traceback.
                conn.invalidate()
            raise
        return active

    def _active(self, cursor: Any, ids: Sequence[int]) -> set[int]:
        unique = sorted(set(ids))
        marks = ", ".join([self._mark] * len(unique))
        cursor.execute(
            f"SELECT id FROM subscribers WHERE status = {self._mark} AND id IN ({marks})",
            (SubscriberStatus.ACTIVE.value, *unique),
        )
        return {int(row[0]) for row in cursor.fetchall()}

    def _open(self) -> None:
        conn = self.store.engine.connect()
        dialect = conn.dialect
        mark = self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._sql = (
            f"UPDATE deliveries SET status = {mark}, attempts = attempts + {mark}, "
            f"last_reply = {mark}, message_id = {mark}, sent_at = {mark}, updated_at = {mark} "
            f"WHERE id = {mark}{self._fenced(mark)}"
        )
        processor = _deliveries.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
        self._to_db = processor or (lambda value: value)
        self._conn = conn

    def _fenced(self, mark: str) -> str:
        """More of the update's WHERE clause (one mark per :attr:`_fence` value)."""
        return ""

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def held_elsewhere(self) -> float | None:
        return None  # one run at a time (the send lock): nobody else holds rows

    def counts(self) -> dict[DeliveryStatus, int]:
        with self.store.session() as session:
            rows = session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.issue_id == self.issue_id)
                .group_by(Delivery.status)
            ).all()
        result = dict.fromkeys(DeliveryStatus, 0)
        for status, n in rows:
            result[DeliveryStatus(status)] = int(n)
        return result

    def finish(self) -> bool:
        with self.store.session() as session, session.begin():
            open_rows = session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(
                    Delivery.issue_id == self.issue_id,
                    Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.DEFERRED]),
                )
            )
            issue = session.get(Issue, self.issue_id)
            if issue is None:
                raise NotFound(f"issue id {self.issue_id} vanished")
            if open_rows:
                issue.state = IssueState.SENDING
                return False
            if issue.state is not IssueState.SENT:
                issue.state = IssueState.SENT
                issue.sent_at = utcnow()
            return True


_ENHANCED_CODE = re.compile(r"\b5\.\d{1,3}\.\d{1,3}\b")


def _bounce(session: Session, issue_id: int, results: Sequence[DeliveryResult]) -> None:
    # A 5.1.x bounce marks the subscriber bounced, unless they already left the list (an
    # unsubscribe is never overwritten).
    for r in results:
        if not r.bounced:
            continue
        # Counted as a hard bounce of this delivery, so a later report about it is not
        # counted again (mailer.bounces).
        code = _ENHANCED_CODE.search(r.reply)
        session.execute(
            update(Delivery)
            .where(Delivery.id == r.delivery_id)
            .values(
                bounce="hard",
                bounce_status=code.group(0) if code else r.reply[:3],
                bounce_reason=r.reply[:2000],
                bounced_at=utcnow(),
            )
        )
        subscriber = session.get(Subscriber, r.subscriber_id)
        if subscriber is not None and subscriber.status is SubscriberStatus.ACTIVE:
            change_status(
                session,
                subscriber,
                SubscriberStatus.BOUNCED,
                source="bounce",
                reason=r.reply[:500],
                issue_id=issue_id,
            )


class SqlSubscriberLookup:
    """:class:`~mailer.send.ports.SubscriberLookup` in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, email: str) -> Recipient | None:
        with self.store.session() as session:
            row = session.execute(
                select(Subscriber.uid, Subscriber.email, Subscriber.name)
                .where(Subscriber.email_key == lookup_key(email))
                .limit(1)
            ).first()
        return None if row is None else Recipient(uid=row[0], email=row[1], name=row[2] or "")
