"""Real `mailer send` and `mailer worker` processes on one PostgreSQL issue, each into its own
recording SMTP server (so a test knows which process delivered what)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from send_smtp_server import SmtpServer
from sqlalchemy import func, select

from mailer.store.db import Store
from mailer.store.models import Delivery, DeliveryStatus, Issue, IssueState, SendClaim
from tests.conftest import REPO, SAMPLE_ISSUE

LEASE = 2.0  # seconds: short, so a dead or frozen sender's rows are taken over quickly
CONNECTIONS = 2  # per process


def postgres_only(store: Store) -> None:
    if store.engine.url.get_backend_name() != "postgresql":
        pytest.skip("cooperating senders need PostgreSQL (MAILER_TEST_DATABASE_URL)")


def mailer(
    cwd: Path, store: Store, server: SmtpServer, *args: str, lease: float = LEASE
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MAILER_SMTP_URL": server.url(),
        "MAILER_DATABASE_URL": store.engine.url.render_as_string(hide_password=False),
        "MAILER_LAYOUTS_DIR": str(REPO / "layouts"),
        "MAILER_SEND_LEASE_SECONDS": str(lease),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "mailer", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def send_args(rate: str | None = None, connections: int = CONNECTIONS) -> tuple[str, ...]:
    args = ("send", str(SAMPLE_ISSUE), "--yes", "--connections", str(connections))
    return (*args, "--rate", rate) if rate else args


def received(servers: Iterable[SmtpServer]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for server in servers:
        counts.update(server.recipients)
    return counts


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def finish(process: subprocess.Popen[bytes], timeout: float = 90) -> tuple[int, str]:
    """Wait for ``process``; (exit code, stdout + stderr)."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, (out + err).decode()


def ledger_state(store: Store) -> tuple[Counter[DeliveryStatus], list[IssueState], int]:
    """(rows per status, the issues' states, claims left)."""
    with store.session() as session:
        statuses = Counter(session.scalars(select(Delivery.status)).all())
        states = list(session.scalars(select(Issue.state)))
        claims = int(session.scalar(select(func.count()).select_from(SendClaim)) or 0)
    return statuses, states, claims


def report(name: str, duplicates: int, bound: int) -> None:
    """Printed for the closing note (run with -s to see it)."""
    print(f"\n[crash-test] {name}: duplicates {duplicates}, bound {bound}")
