"""Scheduled sends with real `mailer worker` processes: one on SQLite (or PostgreSQL), and the
issue's "Done when" scenario on PostgreSQL: two workers, an issue scheduled seconds ahead,
one worker killed with -9 mid-run, and the issue finishes with nobody missed."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from send_helpers import add_subscribers
from send_smtp_server import SmtpServer
from sqlalchemy import select
from typer.testing import CliRunner
from workers_helpers import (
    CONNECTIONS,
    finish,
    ledger_state,
    mailer,
    postgres_only,
    received,
    report,
    wait_until,
)

from mailer.cli import app
from mailer.store.db import Store
from mailer.store.models import DeliveryStatus, Issue, IssueState
from tests.conftest import REPO, SAMPLE_ISSUE

pytestmark = pytest.mark.timeout(180)  # real processes, a wait for the time, a lease to expire

AHEAD = 8  # seconds: composing the issue in a fresh process takes a moment on a busy machine


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:  # whatever a failed test left running
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def schedule_ahead(store: Store, monkeypatch: pytest.MonkeyPatch, *extra: str) -> datetime:
    """`mailer send --at` (in this process: the editor's command; the workers are real
    processes) a few seconds from now."""
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_LAYOUTS_DIR", str(REPO / "layouts"))
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=AHEAD)
    result = CliRunner().invoke(app, ["send", str(SAMPLE_ISSUE), "--at", at.isoformat(), *extra])
    assert result.exit_code == 0, result.output
    assert f"Scheduled for {at.strftime('%Y-%m-%d %H:%M:%S')} UTC" in result.output
    return at


def watch_until_started(
    store: Store, servers: list[SmtpServer], at: datetime, workers: list[subprocess.Popen[bytes]]
) -> None:
    """Poll until the issue is in the ledger; nothing may arrive while its time has not come."""
    deadline = time.monotonic() + 60
    while True:
        before_time = datetime.now(UTC) < at
        arrived = sum(received(servers).values())
        with store.session() as session:
            started = session.scalars(select(Issue)).first()
        if before_time:
            assert arrived == 0 and started is None, "sent before its time"
        if started is not None:
            assert started.created_at >= at  # snapshotted by a worker's pass after its time
            return
        assert all(w.poll() is None for w in workers), "a worker exited"
        assert time.monotonic() < deadline, "the scheduled send never started"
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    return finish(process, timeout=60)


def test_one_worker_sends_a_scheduled_issue_after_its_time_not_before(
    config_env: Path,
    store: Store,
    smtp_factory: Callable[..., SmtpServer],
    processes: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emails = add_subscribers(store, 20)
    server = smtp_factory()
    processes.append(worker := mailer(config_env, store, server, "worker"))
    at = schedule_ahead(store, monkeypatch)
    watch_until_started(store, [server], at, [worker])
    wait_until(lambda: ledger_state(store)[1] == [IssueState.SENT], what="the issue sent")
    code, log = stop(worker)
    assert code == 0, log
    assert sorted(server.recipients) == sorted(emails)
    assert "started scheduled send of 025-may-2022" in log and "20 recipients" in log


def test_two_workers_a_scheduled_issue_and_one_killed_mid_run_nobody_missed(
    config_env: Path,
    store: Store,
    smtp_factory: Callable[..., SmtpServer],
    processes: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    postgres_only(store)
    emails = add_subscribers(store, 400)
    servers = [smtp_factory(), smtp_factory()]
    monkeypatch.setenv("MAILER_CONNECTIONS", str(CONNECTIONS))  # each worker's connections
    workers = [mailer(config_env, store, s, "worker") for s in servers]
    processes.extend(workers)
    # 100/s in all, shared by the workers: the send lasts seconds, so the kill lands mid-run
    at = schedule_ahead(store, monkeypatch, "--rate", "100/s")
    watch_until_started(store, servers, at, workers)
    wait_until(lambda: all(len(s.recipients) >= 10 for s in servers), what="both workers sending")
    victim = 0
    workers[victim].kill()  # -9: no clean stop, its claims die with it
    workers[victim].communicate(timeout=30)
    assert 0 < sum(received(servers).values()) < len(emails), "the kill missed the run"

    wait_until(
        lambda: ledger_state(store)[1] == [IssueState.SENT], timeout=120, what="the survivor"
    )
    code, log = stop(workers[1])
    assert code == 0, log
    statuses, states, claims = ledger_state(store)
    got = received(servers)
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    assert set(got) == set(emails), "nobody missed"
    assert statuses == {DeliveryStatus.SENT: len(emails)} and states == [IssueState.SENT]
    assert claims == 0
    assert duplicates <= CONNECTIONS  # at most one per open connection of the killed worker
    report("scheduled, two workers, one killed", duplicates, CONNECTIONS)


def test_start_due_is_one_of_the_workers_jobs() -> None:
    from mailer.worker import schedule
    from mailer.worker.jobs import JOBS

    job = next(job for job in JOBS if job.name == "start_due")
    assert job.run_once is schedule.start_due and job.interval_seconds == 2.0
