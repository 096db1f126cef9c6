"""The bounce ledger in SQL: :class:`~mailer.bounces.ports.BounceLedger` for `mailer bounces`.

Each report is recorded once (``bounce_reports.key`` is unique): :meth:`SqlBounceLedger.record`
inserts the report, marks the delivery and changes the subscriber in ONE transaction, so two
processes handling the same report (two workers, a re-run over a copy) apply it once; the
loser's transaction rolls back whole and it is told the report was already processed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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
from mailer.store.status import change_status

__all__ = ["SqlBounceLedger"]

_RECENT = 20  # deliveries looked at for a soft-bounce streak (3 are needed)
_SOURCE = {Kind.COMPLAINT: "complaint"}  # history source; every other kind: "bounce"


def _refs() -> Select[int, int, int, int, SubscriberStatus, str]:
    return (
        select(
            Delivery.id,
            Delivery.issue_id,
            Issue.number,
            Delivery.subscriber_id,
            Subscriber.status,
            Delivery.bounce,
        )
        .join(Issue, Issue.id == Delivery.issue_id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
    )


class SqlBounceLedger:
    """:class:`~mailer.bounces.ports.BounceLedger` in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def processed(self, key: str) -> Kind | None:
        with self.store.session() as session:
            kind = session.scalar(select(BounceReport.kind).where(BounceReport.key == key))
        return None if kind is None else Kind(kind)

    def resolve(self, claims: Sequence[Claim]) -> list[DeliveryRef | None]:
        with self.store.session() as session:
            return [self._resolve(session, claim) for claim in claims]

    def _resolve(self, session: Session, claim: Claim) -> DeliveryRef | None:
        query = _refs()
        if claim.message_id:
            query = query.where(Delivery.message_id == claim.message_id)
        elif len(claim.uid) == 32:
            query = query.where(Subscriber.uid == claim.uid, Issue.number == claim.issue_number)
        else:
            # A VERP token carries the uid's first 16 hex digits: a range on the uid index
            # (every uid is 32 lowercase hex digits, all below prefix + "g").
            query = query.where(
                Subscriber.uid >= claim.uid,
                Subscriber.uid < claim.uid + "g",
                Issue.number == claim.issue_number,
            )
        rows = session.execute(query.limit(2)).all()
        if len(rows) != 1:
            return None  # none, or (a shared uid prefix) not one we can be sure of
        r = rows[0]
        status = SubscriberStatus(r[4]).value
        return DeliveryRef(r[0], r[1], r[2], r[3], status, r[5] or "")

    def record(self, verdict: Verdict, delivery: DeliveryRef | None) -> Applied:
        try:
            with self.store.session() as session, session.begin():
                return self._record(session, verdict, delivery)
        except IntegrityError:
            # Another run recorded this report first (the unique key); ours rolled back.
            first = self.processed(verdict.key)
            if first is None:
                raise
            return Applied(first, counted=False, note="already processed")

    def _record(self, session: Session, verdict: Verdict, ref: DeliveryRef | None) -> Applied:
        unrecognised = verdict.kind is Kind.UNRECOGNISED
        report = BounceReport(
            key=verdict.key,
            kind=verdict.kind.value,
            shape=verdict.shape,
            source=verdict.source,
            status="" if unrecognised else verdict.status[:32],
            diagnostic="" if unrecognised else verdict.diagnostic[:2000],
            note=verdict.note[:500],
            report_message_id=verdict.report_message_id[:255],
        )
        session.add(report)
        session.flush()  # the unique key: a second run stops here
        if ref is None or verdict.kind in (Kind.IGNORED, Kind.UNRECOGNISED):
            return Applied(verdict.kind, counted=False, note=verdict.note)
        subscriber = session.scalars(
            select(Subscriber).where(Subscriber.id == ref.subscriber_id).with_for_update()
        ).one_or_none()
        delivery = session.get(Delivery, ref.delivery_id)
        if subscriber is None or delivery is None:
            return Applied(Kind.IGNORED, counted=False, note="the delivery no longer exists")
        report.subscriber_id, report.delivery_id = subscriber.id, delivery.id
        report.issue_id = delivery.issue_id
        return _apply(session, verdict, subscriber, delivery)


def _apply(
    session: Session, verdict: Verdict, subscriber: Subscriber, delivery: Delivery
) -> Applied:
    """The rules (:func:`mailer.bounces.ports.decide`) on the locked rows."""
    kind, before = verdict.kind, delivery.bounce
    if not decide(kind, subscriber.status.value, before, 0).counted:
        return Applied(kind, counted=False, note="already recorded for this delivery")
    delivery.bounce = kind.value
    delivery.bounce_status = verdict.status[:16]
    delivery.bounce_reason = verdict.diagnostic[:2000]
    delivery.bounced_at = utcnow()
    session.flush()  # the streak below reads this delivery too
    streak = _streak(session, subscriber.id) if kind is Kind.SOFT else 0
    decision = decide(kind, subscriber.status.value, before, streak)
    reason = _reason(verdict, streak)
    source = _SOURCE.get(kind, "bounce")
    if decision.new_status:
        change_status(
            session,
            subscriber,
            SubscriberStatus(decision.new_status),
            source=source,
            reason=reason,
            issue_id=delivery.issue_id,
        )
    elif decision.note:
        session.add(
            SubscriberEvent(
                subscriber=subscriber,
                old_status=subscriber.status.value,
                new_status=subscriber.status.value,
                source=source,
                reason=reason + f" (kept {subscriber.status.value})",
                issue_id=delivery.issue_id,
            )
        )
    return Applied(kind, counted=True, new_status=decision.new_status)


def _streak(session: Session, subscriber_id: int) -> int:
    bounces = session.scalars(
        select(Delivery.bounce)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber_id, Delivery.status == DeliveryStatus.SENT)
        .order_by(Issue.number.desc())
        .limit(_RECENT)
    ).all()
    return soft_streak(bounces)


def _reason(verdict: Verdict, streak: int) -> str:
    words = f"{verdict.status} {verdict.diagnostic}".strip()
    if verdict.kind is Kind.COMPLAINT:
        return f"spam complaint ({verdict.status or 'abuse'}) {verdict.diagnostic}".strip()[:500]
    if verdict.kind is Kind.SOFT:
        return f"soft bounce {streak} in a row: {words}"[:500]
    return f"{verdict.kind.value} bounce: {words}"[:500]
