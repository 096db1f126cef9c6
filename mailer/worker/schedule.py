"""The worker's periodic job for scheduled sends: ``start_due(config, store)``.

Each pass first marks missed every schedule nobody started within ``schedule_grace_minutes``
of its time (it is not started late: after an outage the editor decides, and ``mailer send
ISSUE`` starts it by hand), then starts each due one: it claims the schedule and records the
issue with its recipients snapshotted now, in one transaction (:func:`mailer.store.schedules.
start`), so with any number of workers each schedule starts once. The issue is then one being
sent, which every worker joins as it joins any other.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailer.config import Config
from mailer.errors import MailerError
from mailer.store import schedules
from mailer.store.db import Store
from mailer.store.models import utcnow

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 2.0  # how often a worker looks: a schedule starts at most this late


@dataclass
class Pass:
    """What one pass did."""

    started: list[schedules.Started] = field(default_factory=list)
    missed: list[schedules.ScheduleRecord] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (schedule id, why)


def start_due(config: Config, store: Store) -> None:
    """The worker's job (every :data:`INTERVAL_SECONDS`)."""
    run_pass(store, grace=timedelta(minutes=config.schedule_grace_minutes))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_pass(
    store: Store, *, grace: timedelta, now: datetime | None = None, who: str | None = None
) -> Pass:
    """Mark the overdue schedules missed, then start the due ones; ``now`` for tests."""
    now = now or utcnow()
    who = who or worker_name()
    done = Pass(missed=schedules.mark_missed(store, now=now, grace=grace))
    for record in done.missed:
        log.warning(
            "scheduled send of %s (%s) missed: not started within %s; `mailer send %s` "
            "starts it by hand",
            record.slug,
            record.at.isoformat(),
            grace,
            record.slug,
        )
    for schedule_id in schedules.due(store, now=now, grace=grace):
        try:
            started = schedules.start(store, schedule_id, now=now, grace=grace, who=who)
        except MailerError as exc:  # e.g. its number taken meanwhile: the others still go
            log.error("scheduled send %d not started: %s", schedule_id, exc)
            done.failed.append((schedule_id, str(exc)))
            continue
        if started is not None:
            log.info(
                "started scheduled send of %s (due %s): %d recipients",
                started.schedule.slug,
                started.schedule.at.isoformat(),
                started.snapshotted,
            )
            done.started.append(started)
    return done
