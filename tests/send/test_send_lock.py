"""The PostgreSQL send lock: held on a connection of its own, and a run stops when it is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from send_helpers import add_subscribers
from send_smtp_server import SmtpServer
from sqlalchemy import select

from mailer.errors import SendError
from mailer.store.db import Store
from mailer.store.models import Delivery, DeliveryStatus
from mailer.store.send_lock import lock_key, send_lock
from tests.conftest import REPO, SAMPLE_ISSUE
from tests.store.processes import with_application_name

SUBSCRIBERS = 80


def _postgres(store: Store) -> None:
    if store.engine.url.get_backend_name() != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's (MAILER_TEST_DATABASE_URL)")


def _holder(store: Store, slug: str) -> int | None:
    """The backend pid holding the send lock of ``slug``, from pg_locks (another session)."""
    with store.engine.connect() as conn:
        schema = conn.scalar(sa.text("SELECT current_schema()"))
        return conn.scalar(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1"
                " AND ((classid::bigint << 32) | objid::bigint) = :key"
            ),
            {"key": lock_key(str(schema), slug)},
        )


def test_the_lock_is_on_a_connection_of_its_own(store: Store) -> None:
    _postgres(store)
    with store.engine.connect() as conn:
        pooled = conn.scalar(sa.text("SELECT pg_backend_pid()"))
    with send_lock(store, "025-may-2022") as lease:
        holder = _holder(store, "025-may-2022")
        assert holder is not None and holder != pooled
        lease.check()  # held
        with (
            pytest.raises(SendError, match="is being sent by another"),
            send_lock(store, "025-may-2022"),
        ):
            pass
    assert _holder(store, "025-may-2022") is None


def test_a_lost_lock_is_seen_at_once(store: Store) -> None:
    _postgres(store)
    with send_lock(store, "025-may-2022") as lease:
        holder = _holder(store, "025-may-2022")
        with store.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                lease.check()
            except SendError as exc:
                assert "send lock of issue 025-may-2022 was lost" in str(exc)
                break
            time.sleep(0.01)
        else:
            pytest.fail("the lease did not notice the lost lock")
    # Gone with its connection: another run may take it now.
    with send_lock(store, "025-may-2022"):
        pass


def _mailer(cwd: Path, database: str, smtp_url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MAILER_SMTP_URL": smtp_url,
        "MAILER_DATABASE_URL": database,
        "MAILER_LAYOUTS_DIR": str(REPO / "layouts"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "mailer", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.timeout(300)  # two `mailer send` processes, each waited for up to 90 s
def test_a_run_whose_database_connections_are_terminated_stops_and_the_next_resumes(
    config_env: Path, store: Store, smtp: SmtpServer
) -> None:
    """On PostgreSQL `mailer send` holds claims, not this lock (mailer.store.claims): its
    connections killed mid-run stop it with one line, the ledger intact."""
    _postgres(store)
    database = store.engine.url.render_as_string(hide_password=False)
    emails = add_subscribers(store, SUBSCRIBERS)
    args = ("send", str(SAMPLE_ISSUE), "--yes", "--connections", "2")
    sender = with_application_name(database, "mailer-under-test")
    first = _mailer(config_env, sender, smtp.url(), *args, "--rate", "10/s")  # 8 s
    try:
        deadline = time.monotonic() + 60
        while len(smtp.recipients) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        with store.engine.connect() as conn:
            killed = conn.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'mailer-under-test'"
                )
            )
        assert killed, "the run should have connections"
        out, err = first.communicate(timeout=90)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 1, out.decode() + err.decode()
    lines = err.decode().strip().splitlines()
    assert b"Traceback" not in err
    assert lines[-1].startswith("error: send stopped:"), lines
    received = len(smtp.recipients)
    assert 5 <= received < SUBSCRIBERS  # stopped mid-run
    with store.session() as session:
        statuses = Counter(session.scalars(select(Delivery.status)))
    # Intact: every message the server took is recorded, the rest is pending.
    assert statuses == {
        DeliveryStatus.SENT: received,
        DeliveryStatus.PENDING: SUBSCRIBERS - received,
    }

    second = _mailer(config_env, database, smtp.url(), *args)
    out, err = second.communicate(timeout=90)
    assert second.returncode == 0, err.decode()
    assert f"Resuming: {received} already delivered" in out.decode()
    assert Counter(smtp.recipients) == Counter(emails)  # each exactly once
