"""The bounce ledger in SQL: :class:`~mailer.bounces.ports.BounceLedger` for `mailer bounces`.

Each report is recorded once (``bounce_reports.key`` is unique): :meth:`SqlBounceLedger.record`
inserts the report, marks the delivery and changes the subscriber in ONE transaction, so two
processes handling the same report (two workers, a re-run over a copy) apply it once; the
loser's transaction rolls back whole and it is told the report was already processed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from mailer.bounces.ports import (
    Applied,
    Claim,
    DeliveryRef,
    Kind,
    Verdict,
    decide,
    soft_streak,
)
from mailer.send.ports import DeliveryStatus
from mailer.store.db import Store
from mailer.store.models import (
    BounceReport,
    Delivery,
    Issue,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    utcnow,
)
from mailer.store.status import StatusChange, change_statuses

__all__ = ["SqlBounceLedger"]

_deliveries = cast(Table, Delivery.__table__)
_subscribers = cast(Table, Subscriber.__table__)
_issues = cast(Table, Issue.__table__)
_reports = cast(Table, BounceReport.__table__)
_events = cast(Table, SubscriberEvent.__table__)
_RECENT = 20  # deliveries looked at for a soft-bounce streak (3 are needed)
_SOURCE = {Kind.COMPLAINT: "complaint"}  # history source; every other kind: "bounce"


def _refs(*where: ColumnElement[bool]) -> Select[int, int, int, int, str, str]:
    return (
        select(
            _deliveries.c.id,
            _deliveries.c.issue_id,
            _issues.c.number,
            _deliveries.c.subscriber_id,
            _subscribers.c.status,
            _deliveries.c.bounce,
        )
        .join(_issues, _issues.c.id == _deliveries.c.issue_id)
        .join(_subscribers, _subscribers.c.id == _deliveries.c.subscriber_id)
        .where(*where)
        .limit(2)
    )


_BY_MESSAGE_ID = _refs(_deliveries.c.message_id == bindparam("message_id"))
_BY_UID = _refs(_subscribers.c.uid == bindparam("uid"), _issues.c.number == bindparam("number"))
# A VERP token carries the uid's first 16 hex digits: a range on the uid index (every uid is
# 32 lowercase hex digits, all of them below prefix + "g").
_BY_UID_PREFIX = _refs(
    _subscribers.c.uid >= bindparam("uid"),
    _subscribers.c.uid < bindparam("below"),
    _issues.c.number == bindparam("number"),
)
_PROCESSED = select(_reports.c.kind).where(_reports.c.key == bindparam("key"))


class SqlBounceLedger:
    """:class:`~mailer.bounces.ports.BounceLedger` in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def processed(self, key: str) -> Kind | None:
        with self.store.engine.connect() as conn:
            kind = conn.scalar(_PROCESSED, {"key": key})
        return None if kind is None else Kind(kind)

    def resolve(self, claims: Sequence[Claim]) -> list[DeliveryRef | None]:
        with self.store.engine.connect() as conn:
            return [_resolve(conn, claim) for claim in claims]

    def record(self, verdict: Verdict, delivery: DeliveryRef | None) -> Applied:
        try:
            with self.store.engine.begin() as conn:
                return _record(conn, verdict, delivery)
        except IntegrityError:
            # Another run recorded this report first (the unique key); ours rolled back.
            first = self.processed(verdict.key)
            if first is None:
                raise
            return Applied(first, counted=False, note="already processed")


def _resolve(conn: Connection, claim: Claim) -> DeliveryRef | None:
    if claim.message_id:
        rows = conn.execute(_BY_MESSAGE_ID, {"message_id": claim.message_id}).all()
    elif len(claim.uid) == 32:
        rows = conn.execute(_BY_UID, {"uid": claim.uid, "number": claim.issue_number}).all()
    else:
        values = {"uid": claim.uid, "below": claim.uid + "g", "number": claim.issue_number}
        rows = conn.execute(_BY_UID_PREFIX, values).all()
    if len(rows) != 1:
        return None  # none, or (a shared uid prefix) not one we can be sure of
    r = rows[0]
    return DeliveryRef(r[0], r[1], r[2], r[3], SubscriberStatus(r[4]).value, r[5] or "")


# Core statements on one connection: a report is one short transaction of a few rows, and
# 10,000 reports should take seconds, not the ORM's unit of work each time.
_LOCK = (
    select(_subscribers.c.status, _deliveries.c.bounce, _deliveries.c.issue_id)
    .join(_subscribers, _subscribers.c.id == _deliveries.c.subscriber_id)
    .where(_deliveries.c.id == bindparam("delivery_id"))
    .with_for_update(of=_subscribers)
)
_MARK = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("delivery_id"))
    .values(
        bounce=bindparam("bounce"),
        bounce_status=bindparam("bounce_status"),
        bounce_reason=bindparam("bounce_reason"),
        bounced_at=bindparam("at"),
    )
)
_STREAK = (
    select(_deliveries.c.bounce)
    .join(_issues, _issues.c.id == _deliveries.c.issue_id)
    .where(
        _deliveries.c.subscriber_id == bindparam("subscriber_id"),
        _deliveries.c.status == DeliveryStatus.SENT.value,
    )
    .order_by(_issues.c.number.desc())
    .limit(_RECENT)
)


def _record(conn: Connection, verdict: Verdict, ref: DeliveryRef | None) -> Applied:
    kind, note = verdict.kind, verdict.note
    found = None
    if ref is not None and kind not in (Kind.IGNORED, Kind.UNRECOGNISED):
        found = conn.execute(_LOCK, {"delivery_id": ref.delivery_id}).first()
        if found is None:
            kind, note = Kind.IGNORED, "the delivery no longer exists"
    unrecognised = kind is Kind.UNRECOGNISED
    conn.execute(  # the unique key: a second run stops here
        insert(_reports).values(
            key=verdict.key,
            at=utcnow(),
            kind=kind.value,
            shape=verdict.shape,
            source=verdict.source,
            status="" if unrecognised else verdict.status[:32],
            diagnostic="" if unrecognised else verdict.diagnostic[:2000],
            note=note[:500],
            report_message_id=verdict.report_message_id[:255],
            subscriber_id=ref.subscriber_id if ref and found else None,
            delivery_id=ref.delivery_id if ref and found else None,
            issue_id=found[2] if found else None,
        )
    )
    if ref is None or found is None:
        return Applied(kind, counted=False, note=note)
    return _apply(conn, verdict, ref, SubscriberStatus(found[0]).value, found[1] or "")


def _apply(
    conn: Connection, verdict: Verdict, ref: DeliveryRef, status: str, before: str
) -> Applied:
    """The rules (:func:`mailer.bounces.ports.decide`) on the locked rows."""
    kind = verdict.kind
    if not decide(kind, status, before, 0).counted:
        return Applied(kind, counted=False, note="already recorded for this delivery")
    conn.execute(
        _MARK,
        {
            "delivery_id": ref.delivery_id,
            "bounce": kind.value,
            "bounce_status": verdict.status[:16],
            "bounce_reason": verdict.diagnostic[:2000],
            "at": utcnow(),
        },
    )
    streak = 0
    if kind is Kind.SOFT:
        streak = soft_streak(conn.scalars(_STREAK, {"subscriber_id": ref.subscriber_id}).all())
    decision = decide(kind, status, before, streak)
    reason = _reason(verdict, streak)
    source = _SOURCE.get(kind, "bounce")
    if decision.new_status or decision.note:
        new = SubscriberStatus(decision.new_status or status)
        if not decision.new_status:
            reason += f" (kept {status})"
        change = StatusChange(
            ref.subscriber_id, SubscriberStatus(status), new, source, reason, ref.issue_id
        )
        if decision.new_status:
            change_statuses(conn, [change])
        else:  # only a line in the history: the status stays
            conn.execute(insert(_events), [_event(change)])
    return Applied(kind, counted=True, new_status=decision.new_status)


def _event(change: StatusChange) -> dict[str, object]:
    return {
        "subscriber_id": change.subscriber_id,
        "at": utcnow(),
        "old_status": change.old.value,
        "new_status": change.new.value,
        "source": change.source,
        "reason": change.reason,
        "issue_id": change.issue_id,
    }


def _reason(verdict: Verdict, streak: int) -> str:
    words = f"{verdict.status} {verdict.diagnostic}".strip()
    if verdict.kind is Kind.COMPLAINT:
        return f"spam complaint ({verdict.status or 'abuse'}) {verdict.diagnostic}".strip()[:500]
    if verdict.kind is Kind.SOFT:
        return f"soft bounce {streak} in a row: {words}"[:500]
    return f"{verdict.kind.value} bounce: {words}"[:500]
