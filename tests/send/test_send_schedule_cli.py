"""`mailer send --at/--unschedule`, `mailer status` and `mailer report` for scheduled sends,
through the command line, with the worker's ``start_due`` job run as a worker runs it."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from send_helpers import add_subscribers
from send_smtp_server import SmtpServer
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from mailer.cli import app
from mailer.config import load_config
from mailer.store.db import Store
from mailer.store.models import Delivery, Issue, Media, Schedule
from mailer.worker.schedule import start_due
from tests.conftest import REPO, SAMPLE_ISSUE

SLUG = SAMPLE_ISSUE.name


@pytest.fixture
def env(
    config_env: Path, store: Store, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> SmtpServer:
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_LAYOUTS_DIR", str(REPO / "layouts"))
    monkeypatch.setenv("MAILER_SMTP_URL", smtp.url())
    return smtp


def mailer(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ahead(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat(timespec="seconds")


def issues(store: Store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(Issue.slug)))


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_at_records_the_schedule_and_returns_showing_both_zones(
    env: SmtpServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_TIMEZONE", "Asia/Tashkent")
    add_subscribers(store, 3)
    result = mailer("send", str(SAMPLE_ISSUE), "--at", "2030-12-05T09:00")
    assert result.exit_code == 0, result.output
    assert "Scheduled for 2030-12-05 09:00 Asia/Tashkent (2030-12-05 04:00 UTC)" in result.output
    assert env.recipients == [] and issues(store) == []  # no ledger, no snapshot yet
    with store.session() as session:
        row = session.scalars(select(Schedule)).one()
    assert row.at == datetime(2030, 12, 5, 4, 0, tzinfo=UTC) and row.composed["html"]

    status = mailer("status")
    assert status.exit_code == 0, status.output
    assert "#25 025-may-2022" in status.output and "scheduled" in status.output
    assert "2030-12-05 09:00 Asia/Tashkent (2030-12-05 04:00 UTC)" in status.output
    assert mailer("report").output == status.output  # report without an issue: the same
    report = mailer("report", str(SAMPLE_ISSUE))
    assert report.exit_code == 0, report.output
    assert "(scheduled for 2030-12-05 09:00 Asia/Tashkent" in report.output

    offset = mailer("send", str(SAMPLE_ISSUE), "--at", "2030-12-06T09:00+01:00")
    assert one_line_error(offset).startswith(
        "error: issue 025-may-2022 is already scheduled for 2030-12-05 04:00:00 UTC: "
        "`mailer send 025-may-2022 --unschedule` first"
    )
    by_hand = mailer("send", str(SAMPLE_ISSUE), "--yes")
    assert "error: issue 025-may-2022 is scheduled for 2030-12-05 09:00 Asia/Tashkent" in (
        by_hand.output
    )
    assert by_hand.exit_code == 1 and env.recipients == []


def test_unschedule(env: SmtpServer, store: Store) -> None:
    none = mailer("send", str(SAMPLE_ISSUE), "--unschedule")
    assert one_line_error(none) == "error: issue 025-may-2022 is not scheduled"
    assert mailer("send", str(SAMPLE_ISSUE), "--at", ahead(days=3)).exit_code == 0
    gone = mailer("send", str(SAMPLE_ISSUE), "--unschedule")
    assert gone.exit_code == 0, gone.output
    assert gone.output.startswith("Unscheduled issue #25 025-may-2022: its send for ")
    assert "No issue is scheduled or has been sent yet." in mailer("status").output
    assert mailer("send", str(SAMPLE_ISSUE), "--at", ahead(days=4)).exit_code == 0


def test_unschedule_after_the_start_is_refused(env: SmtpServer, store: Store) -> None:
    add_subscribers(store, 2)
    assert mailer("send", str(SAMPLE_ISSUE), "--at", ahead(days=1)).exit_code == 0
    with store.session() as session, session.begin():  # its time has come
        session.execute(update(Schedule).values(at=datetime.now(UTC) - timedelta(minutes=1)))
    start_due(load_config(), store)
    assert issues(store) == [SLUG]
    late = mailer("send", str(SAMPLE_ISSUE), "--unschedule")
    assert "scheduled send has already started" in one_line_error(late)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--at", "2020-01-01T09:00"], "error: --at: 2020-01-01 09:00 UTC has passed (now "),
        (["--at", "next friday"], "error: --at: 'next friday' is not a date and time like"),
        (["--at", "2030-12-05"], "error: --at: '2030-12-05' has no time of day"),
        (["--at", "2030-12-05T09:00", "--dry-run"], "error: --at schedules the whole send"),
        (["--at", "2030-12-05T09:00", "--to", "x@example.org"], "error: --at schedules the"),
        (["--at", "2030-12-05T09:00", "--connections", "2"], "error: --at schedules the"),
        (["--unschedule", "--at", "2030-12-05T09:00"], "error: --unschedule goes alone"),
    ],
)
def test_refusals_are_one_line(
    env: SmtpServer, store: Store, args: list[str], expected: str
) -> None:
    assert one_line_error(mailer("send", str(SAMPLE_ISSUE), *args)).startswith(expected)
    assert issues(store) == []
    with store.session() as session:
        assert session.scalars(select(Schedule)).all() == []


def test_a_bad_timezone_setting_names_the_key(
    env: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_TIMEZONE", "Europe/Atlantis")
    line = one_line_error(mailer("send", str(SAMPLE_ISSUE), "--at", "2030-12-05T09:00"))
    assert line.startswith("error: timezone: expected an IANA time zone name")


def test_a_missed_schedule_is_shown_and_sent_by_hand(env: SmtpServer, store: Store) -> None:
    add_subscribers(store, 3)
    assert mailer("send", str(SAMPLE_ISSUE), "--at", ahead(days=1)).exit_code == 0
    with store.session() as session, session.begin():  # its time came while no worker ran
        session.execute(update(Schedule).values(at=datetime.now(UTC) - timedelta(minutes=61)))
    start_due(load_config(), store)  # the first worker back: too late, so not started
    assert issues(store) == [] and env.recipients == []

    status = mailer("status")
    assert "missed" in status.output
    assert "025-may-2022: missed its time" in status.output
    report = mailer("report", str(SAMPLE_ISSUE))
    assert report.exit_code == 0 and "(missed: scheduled for " in report.output
    assert "within 60 minutes; nothing sent" in report.output

    by_hand = mailer("send", str(SAMPLE_ISSUE), "--yes")
    assert by_hand.exit_code == 0, by_hand.output
    assert "was missed; sending by hand" in by_hand.output
    assert sorted(env.recipients) == [f"reader{i}@example.org" for i in range(3)]
    report = mailer("report", str(SAMPLE_ISSUE))
    assert "(sent)" in report.output and "missed, then started by hand" in report.output
    assert "sent" in mailer("status").output


@pytest.fixture
def worker_loop(store: Store, config_env: Path) -> Iterator[Callable[[], list[datetime]]]:
    """A stand-in worker: ``start_due`` every 0.2 s in a thread; yields a function giving the
    times the job found a new issue in the ledger."""
    config = dataclasses.replace(load_config(), database_url=store.url)
    stop = threading.Event()
    seen: list[datetime] = []

    def loop() -> None:
        while not stop.is_set():
            before = len(issues(store))
            start_due(config, store)
            if len(issues(store)) > before:
                seen.append(datetime.now(UTC))
            stop.wait(0.2)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield lambda: list(seen)
    stop.set()
    thread.join(10)


def test_a_send_scheduled_seconds_ahead_starts_after_its_time_not_before(
    env: SmtpServer, store: Store, worker_loop: Callable[[], list[datetime]]
) -> None:
    add_subscribers(store, 2)
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)  # composing takes a moment
    result = mailer("send", str(SAMPLE_ISSUE), "--at", at.isoformat())
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 30
    while not worker_loop() and time.monotonic() < deadline:
        assert issues(store) == [] or datetime.now(UTC) >= at
        time.sleep(0.05)
    started = worker_loop()
    assert len(started) == 1 and started[0] >= at  # found by a pass after its time
    with store.session() as session:
        issue = session.scalars(select(Issue)).one()
        assert issue.created_at >= at
        assert len(session.scalars(select(Delivery)).all()) == 2
    assert "sending" in mailer("status").output


def test_a_scheduled_issue_keeps_its_images_for_the_worker_that_has_no_folder(
    env: SmtpServer, store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / SLUG
    shutil.copytree(SAMPLE_ISSUE, folder)
    Image.new("RGB", (1600, 1200), (30, 90, 160)).save(folder / "photo.jpg", quality=90)
    snippet = sorted(folder.glob("*.md"))[0]
    snippet.write_text(snippet.read_text() + "\n![The delegation in Tashkent](photo.jpg)\n")
    add_subscribers(store, 2)
    result = mailer("send", str(folder), "--at", ahead(days=1))
    assert result.exit_code == 0, result.output
    with store.session() as session:
        names = list(session.scalars(select(Media.name)))
        composed = session.scalars(select(Schedule)).one().composed
    assert len(names) == 1 and names[0].endswith(".jpg")
    assert f"/media/{names[0]}" in composed["html"]  # the stored email names the kept file
