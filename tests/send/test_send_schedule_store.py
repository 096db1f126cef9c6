"""Scheduled sends in the store and the worker's ``start_due`` pass (SQLite and PostgreSQL):
starting when due and only then, the recipients of that moment, missed after the grace
window, cancelling, and several workers starting each schedule once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from send_helpers import add_subscribers, make_issue
from sqlalchemy import func, select

from mailer.errors import NotFound, SendError
from mailer.send.ports import DeliveryStatus, IssueState
from mailer.send.stored import facts_of
from mailer.store import schedules
from mailer.store.db import Store, open_store
from mailer.store.ledger import SqlIssues
from mailer.store.models import Delivery, Issue, ScheduleState, Subscriber, SubscriberStatus
from mailer.store.send_status import send_statuses
from mailer.worker.schedule import run_pass

AT = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
BEFORE = AT - timedelta(days=1)
GRACE = timedelta(minutes=60)


def schedule(store: Store, slug: str = "025-may-2022", number: int = 25, at: datetime = AT) -> None:
    schedules.schedule_issue(store, facts_of(make_issue(slug, number)), at, now=BEFORE)


def deliveries(store: Store, slug: str) -> int:
    with store.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Delivery)
                .join(Issue, Issue.id == Delivery.issue_id)
                .where(Issue.slug == slug)
            )
            or 0
        )


def test_a_schedule_starts_at_its_time_not_before(store: Store) -> None:
    add_subscribers(store, 3)
    schedule(store)
    assert SqlIssues(store).find("025-may-2022") is None  # nothing recorded in the ledger yet
    early = run_pass(store, grace=GRACE, now=AT - timedelta(seconds=1))
    assert early.started == [] and early.missed == []
    assert SqlIssues(store).find("025-may-2022") is None

    started = run_pass(store, grace=GRACE, now=AT, who="host-a:1")
    assert [s.schedule.slug for s in started.started] == ["025-may-2022"]
    record = SqlIssues(store).find("025-may-2022")
    assert record is not None and record.state is IssueState.SENDING
    assert deliveries(store, "025-may-2022") == 3
    found = schedules.find_schedule(store, "025-may-2022")
    assert found is not None and found.state is ScheduleState.STARTED
    assert found.started_at == AT and found.started_by == "host-a:1"
    again = run_pass(store, grace=GRACE, now=AT + timedelta(seconds=5))
    assert again.started == [] and deliveries(store, "025-may-2022") == 3


def test_the_recipients_are_those_of_the_start_not_of_the_scheduling(store: Store) -> None:
    add_subscribers(store, 2, prefix="early")
    schedule(store)
    add_subscribers(store, 3, prefix="later")  # signed up after it was scheduled
    with store.session() as session, session.begin():
        gone = session.scalars(select(Subscriber).where(Subscriber.email == "early0@example.org"))
        gone.one().status = SubscriberStatus.UNSUBSCRIBED
    run_pass(store, grace=GRACE, now=AT + timedelta(minutes=59))  # late, within the window
    assert deliveries(store, "025-may-2022") == 4


def test_the_stored_composition_is_what_starts(store: Store) -> None:
    issue = make_issue(extra="<p>as scheduled</p>")
    schedules.schedule_issue(store, facts_of(issue), AT, rate=12.5, now=BEFORE)
    run_pass(store, grace=GRACE, now=AT)
    record = SqlIssues(store).find("025-may-2022")
    assert record is not None and record.content_hash == issue.content_hash
    assert record.subject == issue.meta.subject
    stored = SqlIssues(store).stored("025-may-2022")  # what every worker sends
    assert stored is not None and stored.facts == facts_of(issue) and stored.rate == 12.5


def test_missed_after_the_grace_window_and_never_started_late(store: Store) -> None:
    add_subscribers(store, 2)
    schedule(store, "025-may-2022", 25, AT)
    schedule(store, "026-june-2022", 26, AT + timedelta(hours=2))
    late = run_pass(store, grace=GRACE, now=AT + GRACE)  # exactly the window: too late
    assert [m.slug for m in late.missed] == ["025-may-2022"] and late.started == []
    assert SqlIssues(store).find("025-may-2022") is None
    found = schedules.find_schedule(store, "025-may-2022")
    assert found is not None and found.state is ScheduleState.MISSED
    assert found.missed_at == AT + GRACE
    # a later pass neither starts it nor marks it again
    again = run_pass(store, grace=GRACE, now=AT + GRACE + timedelta(minutes=1))
    assert again.missed == [] and again.started == []
    states = {s.slug: s.state for s in send_statuses(store)}
    assert states == {"025-may-2022": "missed", "026-june-2022": "scheduled"}


def test_a_tiny_grace_window(store: Store) -> None:
    schedule(store)
    tiny = timedelta(minutes=1)
    assert run_pass(store, grace=tiny, now=AT + timedelta(seconds=59)).started != []
    schedule(store, "026-june-2022", 26)
    assert [m.slug for m in run_pass(store, grace=tiny, now=AT + tiny).missed] == ["026-june-2022"]


def test_unschedule_before_it_starts(store: Store) -> None:
    schedule(store)
    cancelled = schedules.unschedule(store, "025-may-2022")
    assert cancelled.at == AT and cancelled.state is ScheduleState.SCHEDULED
    assert schedules.find_schedule(store, "025-may-2022") is None
    assert run_pass(store, grace=GRACE, now=AT).started == []
    with pytest.raises(NotFound, match=r"^issue 025-may-2022 is not scheduled$"):
        schedules.unschedule(store, "025-may-2022")


def test_unschedule_after_the_start_is_refused(store: Store) -> None:
    schedule(store)
    run_pass(store, grace=GRACE, now=AT)
    with pytest.raises(SendError, match=r"scheduled send has already started"):
        schedules.unschedule(store, "025-may-2022")


def test_a_missed_schedule_can_be_unscheduled_or_scheduled_again(store: Store) -> None:
    schedule(store)
    run_pass(store, grace=GRACE, now=AT + GRACE)
    later = AT + timedelta(days=1)
    schedules.schedule_issue(store, facts_of(make_issue()), later, now=AT + GRACE)
    found = schedules.find_schedule(store, "025-may-2022")
    assert found is not None and found.state is ScheduleState.SCHEDULED and found.at == later
    assert schedules.unschedule(store, "025-may-2022").at == later


def test_scheduling_is_refused_twice_when_started_and_for_a_taken_number(store: Store) -> None:
    schedule(store)
    with pytest.raises(SendError, match=r"already scheduled for 2026-12-05 04:00:00 UTC: "):
        schedule(store, at=AT + timedelta(hours=1))
    with pytest.raises(SendError, match=r"issue number 25 is already used by issue 025-may"):
        schedule(store, "025-other", 25)
    SqlIssues(store).start(facts_of(make_issue("027-july-2022", 27)), force=False)
    with pytest.raises(SendError, match=r"issue 027-july-2022 is already sending"):
        schedule(store, "027-july-2022", 27)
    with pytest.raises(SendError, match=r"has passed"):
        schedules.schedule_issue(
            store, facts_of(make_issue("028-x", 28)), AT, now=AT + timedelta(seconds=1)
        )


def test_an_issue_started_by_hand_meanwhile_is_not_snapshotted_twice(store: Store) -> None:
    add_subscribers(store, 2)
    schedule(store)
    SqlIssues(store).start(facts_of(make_issue()), force=False)  # a race past the CLI's check
    started = run_pass(store, grace=GRACE, now=AT)
    assert [s.snapshotted for s in started.started] == [0]
    assert deliveries(store, "025-may-2022") == 2


def test_status_lists_every_state_with_times(store: Store) -> None:
    add_subscribers(store, 2)
    schedule(store, "025-may-2022", 25, AT)
    schedule(store, "026-june-2022", 26, AT + timedelta(days=1))
    schedule(store, "027-july-2022", 27, AT + timedelta(days=2))
    run_pass(store, grace=GRACE, now=AT)
    run_pass(store, grace=GRACE, now=AT + timedelta(days=2, minutes=30))  # 026 missed, 027 on
    july = SqlIssues(store).find("027-july-2022")
    assert july is not None
    with store.session() as session, session.begin():
        for row in session.scalars(select(Delivery).where(Delivery.issue_id == july.id)):
            row.status = DeliveryStatus.SENT
    assert SqlIssues(store).ledger(july.id).finish()
    rows = {s.slug: s for s in send_statuses(store)}
    assert {slug: s.state for slug, s in rows.items()} == {
        "025-may-2022": "sending",
        "026-june-2022": "missed",
        "027-july-2022": "sent",
    }
    assert rows["025-may-2022"].scheduled_for == AT and rows["025-may-2022"].started_at == AT
    assert rows["025-may-2022"].total == 2 and rows["025-may-2022"].delivered == 0
    assert rows["027-july-2022"].delivered == 2 and rows["027-july-2022"].sent_at is not None
    assert rows["026-june-2022"].started_at is None and rows["026-june-2022"].sent_at is None
    assert [s.slug for s in send_statuses(store)] == sorted(rows)  # by their times


# --- several workers -----------------------------------------------------------------------

SCHEDULES = 12
READERS = 20

_WORKER = """
import json, sys, time
from datetime import datetime, timedelta
from mailer.store.db import open_store
from mailer.worker.schedule import run_pass
url, now, start_at = sys.argv[1], datetime.fromisoformat(sys.argv[2]), float(sys.argv[3])
store = open_store(url)
time.sleep(max(0.0, start_at - time.time()))  # both processes begin together
done = run_pass(store, grace=timedelta(hours=1), now=now, who=sys.argv[4])
print(json.dumps([[s.schedule.slug for s in done.started], done.failed]))
"""


def _scheduled_many(store: Store) -> None:
    add_subscribers(store, READERS)
    for n in range(SCHEDULES):
        schedule(store, f"{100 + n}-issue", 100 + n, AT + timedelta(seconds=n % 3))


def _check_each_started_once(store: Store, by_worker: list[list[str]]) -> None:
    started = [slug for slugs in by_worker for slug in slugs]
    assert sorted(started) == sorted(f"{100 + n}-issue" for n in range(SCHEDULES))
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Issue)) == SCHEDULES
        assert session.scalar(select(func.count()).select_from(Delivery)) == SCHEDULES * READERS


def test_two_workers_in_threads_never_start_one_schedule_twice(
    store: Store, database_url: str
) -> None:
    _scheduled_many(store)
    barrier = threading.Barrier(2)
    results: list[list[str]] = [[], []]
    errors: list[BaseException] = []
    failed: list[tuple[int, str]] = []  # a second start caught by a unique key is a failure too

    def work(i: int) -> None:
        own = open_store(database_url)  # its own engine and connections, as a process has
        try:
            barrier.wait(10)
            done = run_pass(own, grace=GRACE, now=AT + timedelta(seconds=5), who=f"t{i}")
            results[i] = [s.schedule.slug for s in done.started]
            failed.extend(done.failed)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and failed == []
    print("started per worker:", [len(r) for r in results])
    _check_each_started_once(store, results)


def test_two_worker_processes_never_start_one_schedule_twice(
    store: Store, database_url: str
) -> None:
    import time

    _scheduled_many(store)
    now = (AT + timedelta(seconds=5)).isoformat()
    start_at = str(time.time() + 1.5)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, database_url, now, start_at, f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=90) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    passes = [json.loads(out) for out, _ in outputs]
    assert [failed for _, failed in passes] == [[], []]
    print("started per worker:", [len(started) for started, _ in passes])
    _check_each_started_once(store, [started for started, _ in passes])
