"""Cooperating senders on PostgreSQL, as real processes: kill -9, SIGSTOP past the lease,
repeated kills, a worker joining mid-run, SIGTERM, and the global --rate.

Each process sends into its own recording SMTP server, so a test knows who delivered what.
The bound under test (README "Sending"): nobody is skipped, and a crash (or a freeze past the
lease, which the others cannot tell from one) duplicates at most one message per open
connection of the process that crashed. The duplicate counts are printed (``-s``).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from send_helpers import add_subscribers
from send_smtp_server import SmtpServer
from workers_helpers import (
    CONNECTIONS,
    LEASE,
    finish,
    ledger_state,
    mailer,
    postgres_only,
    received,
    report,
    send_args,
    wait_until,
)

from mailer.store.db import Store
from mailer.store.models import DeliveryStatus, IssueState

pytestmark = pytest.mark.slow


def _all_sent(store: Store, emails: list[str]) -> None:
    statuses, states, claims = ledger_state(store)
    assert statuses == {DeliveryStatus.SENT: len(emails)}
    assert states == [IssueState.SENT]
    assert claims == 0  # the issue's end deletes its claims


def _kill_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.mark.timeout(240)  # three senders, then waiting for a dead one's lease
def test_three_senders_one_killed_the_others_finish_without_missing_anyone(
    config_env: Path, store: Store, smtp_factory: type[SmtpServer], rng: random.Random
) -> None:
    postgres_only(store)
    emails = add_subscribers(store, 900)
    servers = [smtp_factory() for _ in range(3)]
    senders = [mailer(config_env, store, s, *send_args("150/s")) for s in servers]
    try:
        victim = rng.randrange(3)
        wait_until(lambda: len(servers[victim].recipients) > 20, what="the victim sending")
        time.sleep(rng.uniform(0.0, 0.5))
        senders[victim].send_signal(signal.SIGKILL)
        results = [finish(p) for i, p in enumerate(senders) if i != victim]
        senders[victim].communicate()
    finally:
        _kill_all(senders)
    for code, output in results:
        assert code == 0, output
    counts = received(servers)
    assert set(counts) == set(emails)  # nobody missing
    duplicates = sum(n - 1 for n in counts.values())
    report("three senders, one kill -9", duplicates, CONNECTIONS)
    assert duplicates <= CONNECTIONS
    # The victim and at least one other took part (on a loaded machine the third may start
    # after the others have finished: it then finds nothing left, which is right too).
    assert sum(len(s.recipients) > 0 for s in servers) >= 2
    _all_sent(store, emails)


@pytest.mark.timeout(240)
def test_a_sender_frozen_past_its_lease_sends_nothing_it_lost(
    config_env: Path, store: Store, smtp_factory: type[SmtpServer]
) -> None:
    postgres_only(store)
    emails = add_subscribers(store, 600)
    frozen_server, other_server = smtp_factory(), smtp_factory()
    frozen = mailer(config_env, store, frozen_server, *send_args("150/s"))
    other = mailer(config_env, store, other_server, *send_args("150/s"))
    try:
        wait_until(lambda: len(frozen_server.recipients) > 20, what="the frozen one sending")
        wait_until(lambda: len(other_server.recipients) > 20, what="the other one sending")
        frozen.send_signal(signal.SIGSTOP)
        before_freeze = set(frozen_server.recipients)
        time.sleep(LEASE * 2.5)  # its lease runs out: the other takes its rows over
        resumed_at = len(frozen_server.recipients)
        frozen.send_signal(signal.SIGCONT)
        results = [finish(other), finish(frozen)]
    finally:
        _kill_all([frozen, other])
    for code, output in results:
        assert code == 0, output
    assert "lease" in results[1][1]  # it noticed it lost its lease
    after_resume = frozen_server.recipients[resumed_at:]
    by_other = set(other_server.recipients)
    assert not set(after_resume) & by_other  # none of the rows it lost went out from it
    counts = received([frozen_server, other_server])
    assert set(counts) == set(emails)
    duplicates = sum(n - 1 for n in counts.values())
    # A message answered right before the freeze whose outcome was not committed yet is
    # sent again by the taker: a crash's bound (one per connection), not a late send.
    report("one sender frozen past its lease", duplicates, CONNECTIONS)
    assert duplicates <= CONNECTIONS
    assert set(counts) - before_freeze  # the rest went out while it was frozen
    _all_sent(store, emails)


@pytest.mark.timeout(300)
def test_all_senders_killed_repeatedly_then_restarted_the_bound_holds_per_kill(
    config_env: Path, store: Store, smtp_factory: type[SmtpServer], rng: random.Random
) -> None:
    postgres_only(store)
    emails = add_subscribers(store, 800)
    servers = [smtp_factory(), smtp_factory()]
    kills = 0
    for _ in range(3):
        before = sum(len(s.recipients) for s in servers)
        senders = [mailer(config_env, store, s, *send_args("200/s")) for s in servers]
        try:

            def going(start: int = before, processes: list = senders) -> bool:
                sent = sum(len(s.recipients) for s in servers)
                return sent > start + 20 or any(p.poll() is not None for p in processes)

            wait_until(
                going,
                what="sending",
            )
            time.sleep(rng.uniform(0.0, 0.8))
            for process in senders:
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    kills += 1
        finally:
            _kill_all(senders)
    assert kills >= 4, "the kills should land while the senders run"
    final = [mailer(config_env, store, s, *send_args()) for s in servers]
    try:
        results = [finish(p) for p in final]
    finally:
        _kill_all(final)
    for code, output in results:
        assert code == 0, output
    counts = received(servers)
    assert set(counts) == set(emails)
    duplicates = sum(n - 1 for n in counts.values())
    report(f"{kills} kill -9 of all senders", duplicates, kills * CONNECTIONS)
    assert duplicates <= kills * CONNECTIONS
    _all_sent(store, emails)


@pytest.mark.timeout(180)
def test_a_worker_started_mid_run_joins_and_sigterm_stops_it_cleanly(
    config_env: Path, store: Store, smtp_factory: type[SmtpServer]
) -> None:
    postgres_only(store)
    emails = add_subscribers(store, 500)
    send_server, worker_server = smtp_factory(), smtp_factory()
    sender = mailer(config_env, store, send_server, *send_args("100/s"))
    worker = None
    try:
        wait_until(lambda: len(send_server.recipients) > 10, what="the send going")
        worker = mailer(config_env, store, worker_server, "worker")
        wait_until(lambda: len(worker_server.recipients) > 10, what="the worker joining")
        code, output = finish(sender)
        assert code == 0, output
        wait_until(lambda: ledger_state(store)[1] == [IssueState.SENT], what="the issue sent")
        worker.send_signal(signal.SIGTERM)
        code, log = finish(worker, timeout=30)
    finally:
        _kill_all([sender] + ([worker] if worker else []))
    assert code == 0, log
    assert "with 1 other sender(s)" in log and "worker stopped" in log
    assert "Traceback" not in log
    counts = received([send_server, worker_server])
    assert sorted(counts) == sorted(emails) and max(counts.values()) == 1  # no crash: no dup
    _all_sent(store, emails)


@pytest.mark.timeout(180)
def test_sigterm_mid_send_records_what_went_and_releases_the_claims(
    config_env: Path, store: Store, smtp: SmtpServer
) -> None:
    postgres_only(store)
    emails = add_subscribers(store, 400)
    starter = mailer(config_env, store, smtp, *send_args("50/s"))
    worker = None
    try:
        wait_until(lambda: len(smtp.recipients) > 5, what="the send going")
        starter.send_signal(signal.SIGINT)  # leaves the issue half sent, as Ctrl-C does
        finish(starter)
        worker = mailer(config_env, store, smtp, "worker")
        seen = len(smtp.recipients)
        wait_until(lambda: len(smtp.recipients) > seen + 20, what="the worker resuming")
        worker.send_signal(signal.SIGTERM)
        code, log = finish(worker)
        assert code == 0, log
        assert "SIGTERM" in log and "Traceback" not in log
        statuses, states, claims = ledger_state(store)
        assert claims == 0  # released: the next sender need not wait for a lease
        assert states == [IssueState.SENDING] and statuses[DeliveryStatus.PENDING] > 0
        assert statuses[DeliveryStatus.SENT] == len(smtp.recipients)  # all it sent recorded
        code, output = finish(mailer(config_env, store, smtp, *send_args()))
        assert code == 0, output
    finally:
        _kill_all([starter] + ([worker] if worker else []))
    assert sorted(smtp.recipients) == sorted(emails)  # clean stops: each exactly once
    _all_sent(store, emails)


def test_a_worker_exits_with_one_line_when_the_database_is_unreachable_at_start(
    config_env: Path, store: Store, smtp: SmtpServer
) -> None:
    worker = mailer(config_env, store, smtp, "worker")
    worker.kill()
    worker.communicate()
    unreachable = subprocess.run(
        ["python", "-m", "mailer", "worker"],
        cwd=config_env,
        env={
            **__import__("os").environ,
            "PYTHONPATH": str(Path(__file__).parents[2]),
            "MAILER_DATABASE_URL": "postgresql+psycopg://mailer@127.0.0.1:9/nowhere",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unreachable.returncode == 1
    lines = unreachable.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open database"), lines
    assert "Traceback" not in unreachable.stderr


@pytest.mark.timeout(180)
def test_the_rate_is_global_across_senders(
    config_env: Path, store: Store, smtp_factory: type[SmtpServer]
) -> None:
    """Two senders at --rate 40/s send 40 a second together, not 80: counted per second
    window, with a generous margin (the slots are exact; the margin is for the sampling)."""
    postgres_only(store)
    emails = add_subscribers(store, 320)
    servers = [smtp_factory(), smtp_factory()]
    senders = [mailer(config_env, store, s, *send_args("40/s")) for s in servers]
    samples: list[tuple[float, int]] = []
    try:
        while any(p.poll() is None for p in senders):
            samples.append((time.monotonic(), sum(len(s.recipients) for s in servers)))
            time.sleep(0.05)
        results = [finish(p) for p in senders]
    finally:
        _kill_all(senders)
    for code, output in results:
        assert code == 0, output
    assert all(len(s.recipients) > 20 for s in servers)  # both sent a good part
    windows = [b - a for (t0, a) in samples for (t1, b) in samples if 1.0 <= t1 - t0 < 1.05]
    busiest = max(windows)
    print(f"\n[rate] --rate 40/s on two senders: busiest 1 s window {busiest} messages")
    assert 20 <= busiest <= 60, busiest  # 80 if each sender kept its own 40/s
    assert sorted(received(servers)) == sorted(emails)
