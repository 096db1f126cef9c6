"""The send ledger: issues as recorded when their send starts, and one row per recipient.

Everything the send step reads or writes in the database goes through these functions, each
one short transaction, so a send never holds a write lock across network I/O and the web app
can unsubscribe people while a send runs.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from mailer.errors import ContentChanged, NotFound, SendError
from mailer.store.db import Store
from mailer.store.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueState,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from mailer.store.status import change_status

_deliveries = cast(Table, Delivery.__table__)
_subscribers = cast(Table, Subscriber.__table__)


@dataclass(frozen=True)
class IssueRecord:
    id: int
    slug: str
    number: int
    subject: str
    content_hash: str
    state: IssueState


@dataclass(frozen=True)
class IssueFacts:
    """What identifies an issue's content (from the compose step)."""

    slug: str
    number: int
    subject: str
    date: str
    content_hash: str
    web_html: str


@dataclass(frozen=True)
class LedgerRow:
    """A delivery to attempt, with what the message needs and the subscriber's status now."""

    delivery_id: int
    subscriber_id: int
    uid: str
    email: str
    name: str
    active: bool
    attempts: int


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: int
    subscriber_id: int
    status: DeliveryStatus
    reply: str = ""
    message_id: str = ""
    bounced: bool = False  # the reply says the mailbox does not exist: mark the subscriber
    attempted: bool = True  # counts as an SMTP attempt (not for skipped rows)


@dataclass(frozen=True)
class ReportRow:
    email: str
    name: str
    delivery_status: str
    subscriber_status: str
    attempts: int
    last_reply: str
    updated_at: datetime | None


@dataclass(frozen=True)
class Recipient:
    uid: str
    email: str
    name: str


def _record(issue: Issue) -> IssueRecord:
    return IssueRecord(
        id=issue.id,
        slug=issue.slug,
        number=issue.number,
        subject=issue.subject,
        content_hash=issue.content_hash,
        state=issue.state,
    )


def find_issue(store: Store, slug: str) -> IssueRecord | None:
    with store.session() as session:
        issue = session.scalars(select(Issue).where(Issue.slug == slug)).one_or_none()
        return _record(issue) if issue else None


def check_content(record: IssueRecord, facts: IssueFacts, *, force: bool) -> None:
    """Raise ContentChanged if the issue differs from the one whose send started."""
    if record.content_hash != facts.content_hash and not force:
        raise ContentChanged(
            f"issue {facts.slug} changed since its send started (content hash "
            f"{record.content_hash[:12]} -> {facts.content_hash[:12]}): some subscribers "
            "already have the earlier version. Re-run with --force to send the new version "
            "to the remaining recipients only."
        )


def count_active(store: Store) -> int:
    with store.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Subscriber)
                .where(Subscriber.status == SubscriberStatus.ACTIVE)
            )
            or 0
        )


def start_issue(store: Store, facts: IssueFacts, *, force: bool = False) -> tuple[IssueRecord, int]:
    """Record the issue and snapshot its recipients, atomically; return (record, snapshotted).

    The first call inserts the issue row and one pending delivery per active subscriber in
    the same transaction (INSERT ... SELECT), so the ledger either exists whole or not at all.
    Later calls (a resume) only check the content hash and snapshot nothing (0).
    """
    with store.session() as session, session.begin():
        issue = session.scalars(select(Issue).where(Issue.slug == facts.slug)).one_or_none()
        if issue is not None:
            check_content(_record(issue), facts, force=force)
            if issue.content_hash != facts.content_hash:
                issue.content_hash = facts.content_hash
                issue.web_html = facts.web_html
                issue.subject = facts.subject
            return _record(issue), 0
        clash = session.scalars(select(Issue).where(Issue.number == facts.number)).one_or_none()
        if clash is not None:
            raise SendError(
                f"issue number {facts.number} is already used by issue {clash.slug}; "
                f"give {facts.slug} another number"
            )
        issue = Issue(
            slug=facts.slug,
            number=facts.number,
            subject=facts.subject,
            date=facts.date,
            content_hash=facts.content_hash,
            web_html=facts.web_html,
            state=IssueState.SENDING,
        )
        session.add(issue)
        session.flush()
        now = utcnow()
        snapshot = select(
            literal(issue.id),
            _subscribers.c.id,
            literal(DeliveryStatus.PENDING.value),
            literal(0),
            literal(""),
            literal(""),
            literal(now, type_=_deliveries.c.updated_at.type),
        ).where(_subscribers.c.status == SubscriberStatus.ACTIVE.value)
        session.execute(
            insert(_deliveries).from_select(
                [
                    "issue_id",
                    "subscriber_id",
                    "status",
                    "attempts",
                    "last_reply",
                    "message_id",
                    "updated_at",
                ],
                snapshot,
            )
        )
        # (rowcount of INSERT ... SELECT is not reliable on every driver: count instead)
        snapshotted = session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue.id)
        )
        return _record(issue), int(snapshotted or 0)


def require_issue(store: Store, slug: str) -> IssueRecord:
    record = find_issue(store, slug)
    if record is None:
        raise NotFound(f"issue {slug} has not been sent yet (no ledger)")
    return record


def counts(store: Store, issue_id: int) -> dict[DeliveryStatus, int]:
    """Ledger rows per status (every status present, 0 when none)."""
    with store.session() as session:
        rows = session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.issue_id == issue_id)
            .group_by(Delivery.status)
        ).all()
    result = dict.fromkeys(DeliveryStatus, 0)
    for status, n in rows:
        result[DeliveryStatus(status)] = int(n)
    return result


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


def count_to_send(store: Store, issue_id: int, deferred_below: int) -> int:
    with store.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(_deliveries)
                .where(_to_send(issue_id, deferred_below))
            )
            or 0
        )


def next_rows(
    store: Store,
    issue_id: int,
    *,
    deferred_below: int,
    after_id: int,
    limit: int,
) -> list[LedgerRow]:
    """The next ``limit`` rows to send after ``after_id`` (keyset pagination)."""
    with store.session() as session:
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
            .where(_to_send(issue_id, deferred_below), _deliveries.c.id > after_id)
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


def still_active(store: Store, subscriber_ids: Sequence[int]) -> set[int]:
    """Which of ``subscriber_ids`` are active right now."""
    if not subscriber_ids:
        return set()
    with store.session() as session:
        return set(
            session.scalars(
                select(Subscriber.id).where(
                    Subscriber.id.in_(subscriber_ids),
                    Subscriber.status == SubscriberStatus.ACTIVE,
                )
            )
        )


def _bounce(session: Session, issue_id: int, results: Sequence[DeliveryResult]) -> None:
    # A 5.1.x bounce marks the subscriber bounced, unless they already left the list (an
    # unsubscribe is never overwritten).
    for r in results:
        if not r.bounced:
            continue
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


class LedgerWriter:
    """A send run's writes on one long-lived connection: one transaction per group.

    The hot path of a fast send is this commit, several hundred times a second; keeping
    the connection (no pool checkout, no ORM session unless a bounce needs one) makes it
    cheap. Used by one thread at a time.
    """

    def __init__(self, store: Store, issue_id: int) -> None:
        self._store = store
        self._issue_id = issue_id
        self._conn: Connection | None = None
        self._sql = ""
        self._to_db: Callable[[datetime], object] = lambda value: value

    def record(self, results: Sequence[DeliveryResult]) -> None:
        """Write ``results`` and commit before returning."""
        if not results:
            return
        if self._conn is None:
            self._open()
        conn = self._conn
        assert conn is not None
        # Values in the driver's own form, converted once per group: the executemany below
        # bypasses SQLAlchemy's per-row type processing (most of this loop's cost).
        now = self._to_db(utcnow())
        rows = [
            (
                r.status.value,
                1 if r.attempted else 0,
                r.reply[:2000],
                r.message_id,
                now if r.status is DeliveryStatus.SENT else None,
                now,
                r.delivery_id,
            )
            for r in results
        ]
        try:
            conn.exec_driver_sql(self._sql, rows)
            if any(r.bounced for r in results):
                with Session(bind=conn) as session:
                    _bounce(session, self._issue_id, results)
                    session.flush()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _open(self) -> None:
        conn = self._store.engine.connect()
        dialect = conn.dialect
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._sql = (
            f"UPDATE deliveries SET status = {mark}, attempts = attempts + {mark}, "
            f"last_reply = {mark}, message_id = {mark}, sent_at = {mark}, updated_at = {mark} "
            f"WHERE id = {mark}"
        )
        processor = _deliveries.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
        self._to_db = processor or (lambda value: value)
        self._conn = conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def finish_issue(store: Store, issue_id: int) -> bool:
    """Mark the issue sent when no row is pending or deferred; return whether it is."""
    with store.session() as session, session.begin():
        open_rows = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.issue_id == issue_id,
                Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.DEFERRED]),
            )
        )
        issue = session.get(Issue, issue_id)
        if issue is None:
            raise NotFound(f"issue id {issue_id} vanished")
        if open_rows:
            issue.state = IssueState.SENDING
            return False
        if issue.state is not IssueState.SENT:
            issue.state = IssueState.SENT
            issue.sent_at = utcnow()
        return True


def problem_rows(store: Store, issue_id: int) -> list[ReportRow]:
    """Failed and deferred deliveries, and recipients whose subscription bounced."""
    with store.session() as session:
        rows = session.execute(
            select(
                Subscriber.email,
                Subscriber.name,
                Delivery.status,
                Subscriber.status,
                Delivery.attempts,
                Delivery.last_reply,
                Delivery.updated_at,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(
                Delivery.issue_id == issue_id,
                (Delivery.status.in_([DeliveryStatus.FAILED, DeliveryStatus.DEFERRED]))
                | (Subscriber.status == SubscriberStatus.BOUNCED),
            )
            .order_by(Delivery.status, Subscriber.email_key)
        ).all()
    return [
        ReportRow(
            email=r[0],
            name=r[1] or "",
            delivery_status=str(DeliveryStatus(r[2]).value),
            subscriber_status=str(SubscriberStatus(r[3]).value),
            attempts=r[4],
            last_reply=r[5] or "",
            updated_at=r[6],
        )
        for r in rows
    ]


REPORT_COLUMNS = (
    "email",
    "name",
    "delivery_status",
    "subscriber_status",
    "attempts",
    "last_reply",
    "updated_at",
)


def write_report_csv(rows: Sequence[ReportRow], out: IO[str]) -> None:
    """``mailer report --csv``: one line per problem row (``out`` opened with newline="")."""
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        values = {**vars(row), "updated_at": row.updated_at.isoformat() if row.updated_at else ""}
        writer.writerow([values[column] for column in REPORT_COLUMNS])


def find_recipient(store: Store, email: str) -> Recipient | None:
    """The subscriber with ``email`` (any status), for personalising a test send."""
    with store.session() as session:
        row = session.execute(
            select(Subscriber.uid, Subscriber.email, Subscriber.name)
            .where(Subscriber.email_key == email.strip().lower())
            .limit(1)
        ).first()
    return None if row is None else Recipient(uid=row[0], email=row[1], name=row[2] or "")


def active_rows(store: Store, *, after_id: int, limit: int) -> list[LedgerRow]:
    """Active subscribers as would-be ledger rows (``delivery_id`` = subscriber id)."""
    with store.session() as session:
        rows = session.execute(
            select(Subscriber.id, Subscriber.uid, Subscriber.email, Subscriber.name)
            .where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id > after_id)
            .order_by(Subscriber.id)
            .limit(limit)
        ).all()
    return [LedgerRow(r[0], r[0], r[1], r[2], r[3] or "", True, 0) for r in rows]


class IssueLedger:
    """The ledger of one issue, as the send run uses it."""

    def __init__(self, store: Store, issue_id: int) -> None:
        self.store = store
        self.issue_id = issue_id
        self._writer = LedgerWriter(store, issue_id)

    def next_rows(self, *, deferred_below: int, after_id: int, limit: int) -> list[LedgerRow]:
        return next_rows(
            self.store,
            self.issue_id,
            deferred_below=deferred_below,
            after_id=after_id,
            limit=limit,
        )

    def count_to_send(self, deferred_below: int) -> int:
        return count_to_send(self.store, self.issue_id, deferred_below)

    def still_active(self, subscriber_ids: Sequence[int]) -> set[int]:
        return still_active(self.store, subscriber_ids)

    def record(self, results: Sequence[DeliveryResult]) -> None:
        self._writer.record(results)

    def close(self) -> None:
        self._writer.close()

    def counts(self) -> dict[DeliveryStatus, int]:
        return counts(self.store, self.issue_id)

    def finish(self) -> bool:
        return finish_issue(self.store, self.issue_id)


class SqlIssues:
    """Recording issues and opening their ledgers in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, slug: str) -> IssueRecord | None:
        return find_issue(self.store, slug)

    def start(self, facts: IssueFacts, *, force: bool) -> tuple[IssueRecord, int]:
        return start_issue(self.store, facts, force=force)

    def count_active(self) -> int:
        return count_active(self.store)

    def ledger(self, issue_id: int) -> IssueLedger:
        return IssueLedger(self.store, issue_id)
