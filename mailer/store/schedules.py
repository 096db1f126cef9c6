"""Scheduled sends: `mailer send --at` records one, a worker's ``start_due`` starts it.

A schedule keeps the issue as it was composed when it was scheduled (the send's
:class:`~mailer.send.ports.IssueFacts`), so a worker on any host starts exactly that, without
the issue folder. Its recipients are not snapshotted until it starts.

Starting is one transaction: a conditional UPDATE claims the row (``state = 'scheduled'``
and the time within the grace window), then the issue is recorded and its recipients
snapshotted as a first ``mailer send`` does. Two workers that try at once cannot both
claim it: on PostgreSQL the second UPDATE waits for the first's row lock and then no longer
matches; on SQLite the second waits for the write lock and then matches nothing either. A
crash before the commit leaves the schedule as it was, for the next pass.

Times are compared on the callers' clock (``now``, UTC): the hosts' clocks must be in step
(NTP), as for any scheduler.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, func, select, update
from sqlalchemy.orm import Session

from mailer.errors import NotFound, SendError
from mailer.send.ports import IssueFacts
from mailer.store.db import Store
from mailer.store.ledger import _new_issue, _snapshot
from mailer.store.models import Delivery, Issue, Schedule, ScheduleState, utcnow


@dataclass(frozen=True)
class ScheduleRecord:
    """A scheduled send as the CLI and the worker see it."""

    slug: str
    number: int
    subject: str
    at: datetime  # aware, UTC
    state: ScheduleState
    rate: float | None = None
    started_at: datetime | None = None
    started_by: str = ""
    missed_at: datetime | None = None


def _record(row: Schedule) -> ScheduleRecord:
    return ScheduleRecord(
        slug=row.slug,
        number=row.number,
        subject=row.subject,
        at=row.at,
        state=row.state,
        rate=row.rate,
        started_at=row.started_at,
        started_by=row.started_by,
        missed_at=row.missed_at,
    )


def _utc(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _changed(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (a DML statement's result is a CursorResult)."""
    return cast(CursorResult[Any], result).rowcount


def facts_to_json(facts: IssueFacts) -> dict[str, Any]:
    return dataclasses.asdict(facts)


def facts_from_json(data: dict[str, Any]) -> IssueFacts:
    """The stored facts; a field this version does not know is left out, one it knows but the
    row lacks takes the dataclass's default (a schedule written by a neighbouring version)."""
    names = {field.name for field in dataclasses.fields(IssueFacts)}
    return IssueFacts(**{key: value for key, value in data.items() if key in names})


def find_schedule(store: Store, slug: str) -> ScheduleRecord | None:
    with store.session() as session:
        row = session.scalars(select(Schedule).where(Schedule.slug == slug)).one_or_none()
        return _record(row) if row is not None else None


def schedule_issue(
    store: Store,
    facts: IssueFacts,
    at: datetime,
    *,
    rate: float | None = None,
    now: datetime | None = None,
) -> ScheduleRecord:
    """Record that ``facts`` goes out at ``at`` (aware). Refused when ``at`` is before ``now``
    (default: the clock), the issue's send has started, it is scheduled already (unschedule
    it first: a second ``--at`` never moves a time silently) or its number belongs to
    another issue. A missed schedule is replaced."""
    now = now or utcnow()
    if at < now:
        raise SendError(f"--at: {_utc(at)} has passed (now {_utc(now)})")
    with store.session() as session, session.begin():
        _refuse_started(session, facts)
        row = session.scalars(select(Schedule).where(Schedule.slug == facts.slug)).one_or_none()
        if row is not None and row.state is not ScheduleState.MISSED:
            raise SendError(
                f"issue {facts.slug} is already scheduled for {_utc(row.at)}: "
                f"`mailer send {facts.slug} --unschedule` first to set another time"
            )
        if row is None:
            row = Schedule(slug=facts.slug)
            session.add(row)
        row.number, row.subject, row.at, row.rate = facts.number, facts.subject, at, rate
        row.composed = facts_to_json(facts)
        row.state, row.created_at, row.missed_at = ScheduleState.SCHEDULED, utcnow(), None
        session.flush()
        return _record(row)


def _refuse_started(session: Session, facts: IssueFacts) -> None:
    issue = session.scalars(select(Issue).where(Issue.slug == facts.slug)).one_or_none()
    if issue is not None:
        raise SendError(
            f"issue {facts.slug} is already {issue.state.value} (its send started "
            f"{_utc(issue.created_at)}): it cannot be scheduled; `mailer send` resumes it"
        )
    clash = session.scalars(
        select(Issue.slug)
        .where(Issue.number == facts.number)
        .union(
            select(Schedule.slug).where(
                Schedule.number == facts.number, Schedule.slug != facts.slug
            )
        )
    ).first()
    if clash is not None:
        raise SendError(
            f"issue number {facts.number} is already used by issue {clash}; "
            f"give {facts.slug} another number"
        )


def unschedule(store: Store, slug: str) -> ScheduleRecord:
    """Cancel the schedule of ``slug`` (waiting or missed); refused once a worker started it.
    One conditional DELETE, so it cannot pass a worker's claim of the same row."""
    with store.session() as session, session.begin():
        row = session.scalars(select(Schedule).where(Schedule.slug == slug)).one_or_none()
        if row is None:
            raise NotFound(f"issue {slug} is not scheduled")
        record = _record(row)
        gone = session.execute(
            delete(Schedule).where(
                Schedule.id == row.id,
                Schedule.state.in_([ScheduleState.SCHEDULED, ScheduleState.MISSED]),
            )
        )
    if _changed(gone) != 1:
        raise SendError(
            f"issue {slug}'s scheduled send has already started: it is in the ledger now "
            f"(`mailer report {slug}`)"
        )
    return record


def mark_missed(store: Store, *, now: datetime, grace: timedelta) -> list[ScheduleRecord]:
    """Mark missed every schedule still waiting ``grace`` after its time (not started late:
    the editor decides); return those this call marked."""
    marked = []
    with store.session() as session, session.begin():
        late = session.scalars(
            select(Schedule).where(
                Schedule.state == ScheduleState.SCHEDULED, Schedule.at <= now - grace
            )
        ).all()
        for row in late:
            done = session.execute(
                update(Schedule)
                .where(Schedule.id == row.id, Schedule.state == ScheduleState.SCHEDULED)
                .values(state=ScheduleState.MISSED, missed_at=now)
            )
            if _changed(done) == 1:
                marked.append(dataclasses.replace(_record(row), state=ScheduleState.MISSED))
    return marked


def due(store: Store, *, now: datetime, grace: timedelta) -> list[int]:
    """Ids of the schedules to start now, earliest first (a cheap read, no lock)."""
    with store.session() as session:
        return list(
            session.scalars(
                select(Schedule.id)
                .where(
                    Schedule.state == ScheduleState.SCHEDULED,
                    Schedule.at <= now,
                    Schedule.at > now - grace,
                )
                .order_by(Schedule.at, Schedule.id)
            )
        )


@dataclass(frozen=True)
class Started:
    schedule: ScheduleRecord
    issue_id: int
    snapshotted: int  # recipients recorded (0: the issue had been started by hand)


def start(
    store: Store, schedule_id: int, *, now: datetime, grace: timedelta, who: str
) -> Started | None:
    """Claim schedule ``schedule_id`` and record its issue with its recipients, in one
    transaction; None when it is not to start (another worker has, it was cancelled, or it
    is not due or too late)."""
    with store.session() as session, session.begin():
        claimed = session.execute(  # first statement: SQLite takes the write lock here
            update(Schedule)
            .where(
                Schedule.id == schedule_id,
                Schedule.state == ScheduleState.SCHEDULED,
                Schedule.at <= now,
                Schedule.at > now - grace,
            )
            .values(state=ScheduleState.STARTED, started_at=now, started_by=who[:200])
        )
        if _changed(claimed) != 1:
            return None
        row = session.get_one(Schedule, schedule_id)
        facts = facts_from_json(row.composed)
        issue = session.scalars(select(Issue).where(Issue.slug == row.slug)).one_or_none()
        if issue is not None:  # started by hand in the meantime: it is the ledger's already
            return Started(_record(row), issue.id, 0)
        issue = _new_issue(session, facts)
        issue.created_at = now  # its send starts now, on the claim's clock
        issue.rate = row.rate  # `--at ... --rate`: shared by every worker that joins it
        session.execute(_snapshot(issue.id))
        count = session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue.id)
        )
        return Started(_record(row), issue.id, int(count or 0))
