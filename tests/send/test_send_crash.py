"""kill -9 at random moments: nobody is skipped, duplicates stay within one per connection.

The moments come from the `rng` fixture (tests/conftest.py): a failure prints its seed, and
MAILER_TEST_SEED=N replays the same choices (the kills still land where the timing puts them).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from send_helpers import add_subscribers
from send_smtp_server import SmtpServer
from sqlalchemy import select

from mailer.store.db import Store
from mailer.store.models import Delivery, DeliveryStatus
from tests.conftest import REPO, SAMPLE_ISSUE

SUBSCRIBERS = 600
CONNECTIONS = 2
KILLS = 4


def _mailer(cwd: Path, database: str, smtp_url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MAILER_SMTP_URL": smtp_url,
        "MAILER_DATABASE_URL": database,
        "MAILER_LAYOUTS_DIR": str(REPO / "layouts"),
        # PostgreSQL: a killed run's rows are taken over when its lease runs out.
        "MAILER_SEND_LEASE_SECONDS": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "mailer", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)  # up to five `mailer send` processes, each waited for up to 60 s
def test_repeated_kill_9_loses_nobody_and_duplicates_at_most_one_per_connection(
    config_env: Path, store: Store, smtp: SmtpServer, rng: random.Random
) -> None:
    database = store.engine.url.render_as_string(hide_password=False)
    emails = add_subscribers(store, SUBSCRIBERS)
    args = ("send", str(SAMPLE_ISSUE), "--yes", "--rate", "200/s")
    args += ("--connections", str(CONNECTIONS))
    kills = 0
    mid_send = 0
    for attempt in range(KILLS):
        before = len(smtp.recipients)
        process = _mailer(config_env, database, smtp.url(), *args)
        if attempt == 0:
            time.sleep(rng.uniform(0.2, 1.5))  # anywhere: start-up, compose, snapshot, send
        else:
            deadline = time.monotonic() + 20
            while len(smtp.recipients) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))  # somewhere in the middle of sending
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate()  # waits, and closes its pipes
        now = len(smtp.recipients)
        mid_send += before < now < SUBSCRIBERS
    assert mid_send >= 2, "the kills should land while messages are going out"

    final = _mailer(config_env, database, smtp.url(), *args)
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0, err.decode()
    assert b"already delivered" in out

    received = Counter(smtp.recipients)
    assert set(received) == set(emails)  # every active subscriber got it
    duplicates = sum(n - 1 for n in received.values())
    assert duplicates <= kills * CONNECTIONS, (kills, received.most_common(5))
    with store.session() as session:
        statuses = Counter(session.scalars(select(Delivery.status)).all())
    assert statuses == {DeliveryStatus.SENT: SUBSCRIBERS}


@pytest.mark.timeout(300)  # three `mailer send` processes, each waited for up to 60 s
def test_a_second_run_of_the_same_issue_is_refused_while_one_sends(
    config_env: Path, store: Store, smtp: SmtpServer
) -> None:
    """Two runs would take the same pending rows and send each twice (SQLite; on PostgreSQL
    a second run joins the first: tests/send/test_send_workers.py)."""
    if store.engine.url.get_backend_name() == "postgresql":
        pytest.skip("on PostgreSQL a second run cooperates with the first")
    database = store.engine.url.render_as_string(hide_password=False)
    emails = add_subscribers(store, 100)
    args = ("send", str(SAMPLE_ISSUE), "--yes", "--connections", "2")
    # 50 s at 2/s: the second process must start (imports, compose) while the first sends,
    # even on a loaded machine; the first is stopped by Ctrl-C as soon as that is checked.
    first = _mailer(config_env, database, smtp.url(), *args, "--rate", "2/s")
    try:
        deadline = time.monotonic() + 30
        while not smtp.recipients and time.monotonic() < deadline:
            time.sleep(0.01)
        assert smtp.recipients, "the first run should be sending"
        second = _mailer(config_env, database, smtp.url(), *args)
        out, err = second.communicate(timeout=60)
        assert first.poll() is None, "the first run should still be sending"
        assert second.returncode == 1, out.decode() + err.decode()
        assert "is being sent by another `mailer send` right now" in err.decode()
        assert b"Traceback" not in err
        first.send_signal(signal.SIGINT)  # Ctrl-C: the first run stops and lets go
        first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()  # closes its pipes on every path
    final = _mailer(config_env, database, smtp.url(), *args)
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0, err.decode()
    assert sorted(smtp.recipients) == sorted(emails)  # each exactly once
