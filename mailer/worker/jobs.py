"""The worker's periodic jobs: the plug-in point.

A job is a name, an interval and ``run_once(config, store)``; the worker runs every
registered job (whose ``enabled(config)`` holds) about every ``interval_seconds``, one at a
time, in a thread beside the sending. A job must be safe to run from several workers at
once (each of these is: their rows are claimed or recorded once). Adding one is one line::

    register(Job("start_due", 5.0, start_due))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailer.bounces.job import run_once as poll_bounces
from mailer.config import Config
from mailer.send.outbox import OutboxSummary
from mailer.send.outbox import run_once as send_outbox
from mailer.store.db import Store
from mailer.store.signup_outbox import SqlOutbox
from mailer.worker import schedule


def _always(config: Config) -> bool:
    return True


@dataclass(frozen=True)
class Job:
    name: str
    interval_seconds: float
    run_once: Callable[[Config, Store], object]
    enabled: Callable[[Config], bool] = _always


JOBS: list[Job] = []


def register(job: Job) -> Job:
    """Add ``job`` to what every worker started after this runs."""
    JOBS.append(job)
    return job


def drain_outbox(config: Config, store: Store) -> OutboxSummary:
    """One run of the sign-up outbox (purge, then send what is due)."""
    return send_outbox(config, SqlOutbox(store))


def _has_bounce_mailbox(config: Config) -> bool:
    return bool(config.bounce_mailbox)


register(Job("outbox", 1.0, drain_outbox))
register(Job("bounces", 300.0, poll_bounces, enabled=_has_bounce_mailbox))
register(Job("start_due", schedule.INTERVAL_SECONDS, schedule.start_due))
