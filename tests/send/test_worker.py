"""`mailer worker` in process: it resumes issues being sent (SQLite and PostgreSQL), runs
its periodic jobs, and rides out a database outage with one log line each way."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from send_helpers import add_subscribers, make_issue, with_server
from send_smtp_server import SmtpServer

from mailer.config import Config
from mailer.errors import DatabaseUnavailable, MailerError
from mailer.send.stored import facts_of
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues
from mailer.store.models import IssueState
from mailer.worker import jobs
from mailer.worker.jobs import JOBS, Job
from mailer.worker.main import Worker
from mailer.worker.periodic import Periodic
from mailer.worker.sending import Sending


@contextmanager
def running(worker: Worker) -> Iterator[list[str]]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield []
    finally:
        worker.stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive()


def _wait(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_worker_resumes_an_issue_being_sent_from_the_stored_version(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    emails = add_subscribers(store, 30)
    SqlIssues(store).start(facts_of(make_issue()), force=False)  # started, nothing sent
    log: list[str] = []
    worker = Worker(with_server(config, smtp), store, log.append, jobs=[], poll=0.05)
    with running(worker):
        _wait(lambda: len(smtp.recipients) == len(emails))
        _wait(lambda: any("the issue is sent" in line for line in log))
    assert sorted(smtp.recipients) == sorted(emails)
    record = SqlIssues(store).find("025-may-2022")
    assert record is not None and record.state is IssueState.SENT
    assert log[-1] == "worker stopped"


def test_an_issue_never_started_or_sent_already_is_left_alone(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    add_subscribers(store, 3)
    sending = Sending(with_server(config, smtp), store, threading.Event(), print)
    assert sending.round() == 0
    SqlIssues(store).start(facts_of(make_issue()), force=False)
    assert sending.round() == 1
    assert sending.round() == 0  # sent: nothing to do
    assert len(smtp.recipients) == 3


def test_jobs_run_at_their_interval_and_a_failing_one_is_logged_once(
    store: Store, config: Config
) -> None:
    calls: list[str] = []
    failures = iter(range(3))

    def flaky(config: Config, store: Store) -> None:
        calls.append("flaky")
        if next(failures, None) is not None:
            raise MailerError("mailbox unreachable")

    stop = threading.Event()
    log: list[str] = []
    chosen = [
        Job("often", 0.05, lambda c, s: calls.append("often")),
        Job("flaky", 0.01, flaky),
        Job("off", 0.01, lambda c, s: calls.append("off"), enabled=lambda c: False),
    ]
    periodic = Periodic(config, store, chosen, stop, log.append)
    periodic.start()
    _wait(lambda: calls.count("flaky") >= 5 and calls.count("often") >= 3)
    stop.set()
    periodic.join(timeout=10)
    assert "off" not in calls
    assert log == [
        "job flaky failed: mailbox unreachable (retrying; logged again once it works)",
        "job flaky works again",
    ]


def test_the_registered_jobs_are_the_outbox_and_the_bounce_mailbox(config: Config) -> None:
    by_name = {job.name: job for job in JOBS}
    assert by_name["outbox"].run_once is jobs.drain_outbox and by_name["outbox"].interval_seconds
    assert not by_name["bounces"].enabled(config)  # no bounce_mailbox configured
    assert by_name["bounces"].interval_seconds == 300


def test_a_database_outage_is_one_line_then_one_when_it_is_back(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes: list[int | None] = [None, None, None, 0, 0]

    def round_(self: Sending) -> int:
        outcome = outcomes.pop(0) if outcomes else 0
        if outcome is None:
            raise DatabaseUnavailable("database x: connection refused")
        return outcome

    monkeypatch.setattr(Sending, "round", round_)
    log: list[str] = []
    worker = Worker(config, store, log.append, jobs=[], poll=0.01)
    with running(worker):
        _wait(lambda: not outcomes)
    assert [line for line in log if "sending" in line] == [
        "sending failed: database x: connection refused (retrying with backoff; logged again "
        "once it works)",
        "sending works again",
    ]
