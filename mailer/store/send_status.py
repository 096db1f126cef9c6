"""`mailer status`: every issue that is scheduled, sending, sent or missed, with its times.

An issue whose send has started is the ledger's (``issues``: sending or sent, with its
delivery counts); one that has not is its schedule's (``schedules``: scheduled or missed).
A schedule that a worker started shows as its issue, with the time it was scheduled for.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from mailer.send.ports import DeliveryStatus
from mailer.store.db import Store
from mailer.store.models import Delivery, Issue, Schedule, ScheduleState


@dataclass(frozen=True)
class SendStatus:
    slug: str
    number: int
    subject: str
    state: str  # scheduled, missed, sending or sent
    scheduled_for: datetime | None  # the --at time, if it was scheduled
    started_at: datetime | None  # when its recipients were snapshotted
    sent_at: datetime | None
    delivered: int = 0  # rows sent
    total: int = 0  # rows in the ledger

    @property
    def when(self) -> datetime:
        """The time it is listed by: scheduled for, else started."""
        found = self.scheduled_for or self.started_at
        assert found is not None
        return found


def send_statuses(store: Store) -> list[SendStatus]:
    """Every scheduled, missed, sending and sent issue, by its time (newest last)."""
    with store.session() as session:
        schedules = {row.slug: row for row in session.scalars(select(Schedule))}
        issues = session.scalars(select(Issue).where(Issue.number > 0)).all()
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        for issue_id, status, n in session.execute(
            select(Delivery.issue_id, Delivery.status, func.count()).group_by(
                Delivery.issue_id, Delivery.status
            )
        ):
            counts[issue_id][DeliveryStatus(status).value] = n
        found = []
        for issue in issues:
            schedule = schedules.pop(issue.slug, None)
            rows = counts[issue.id]
            found.append(
                SendStatus(
                    slug=issue.slug,
                    number=issue.number,
                    subject=issue.subject,
                    state=issue.state.value,
                    scheduled_for=schedule.at if schedule is not None else None,
                    started_at=issue.created_at,
                    sent_at=issue.sent_at,
                    delivered=rows.get(DeliveryStatus.SENT.value, 0),
                    total=sum(rows.values()),
                )
            )
        for schedule in schedules.values():  # not started (or its issue is gone)
            state = schedule.state
            found.append(
                SendStatus(
                    slug=schedule.slug,
                    number=schedule.number,
                    subject=schedule.subject,
                    state=state.value,
                    scheduled_for=schedule.at,
                    started_at=schedule.started_at if state is ScheduleState.STARTED else None,
                    sent_at=None,
                )
            )
    return sorted(found, key=lambda s: (s.when, s.number))
