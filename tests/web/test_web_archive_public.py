"""Which issues are public: only those of which a copy was delivered, or whose send finished.

A send that fails before its first message (the SMTP server refused the connection, or the
login) has recorded the issue and its ledger, but nobody has it yet: the archive, its page
and the feed must not show it, since the editor may still change it before sending again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from starlette.testclient import TestClient

from mailer.send.sink import start_sink
from mailer.store import subscribers
from mailer.store.archive import archived_issues, archived_web_html
from mailer.store.db import Store
from mailer.store.models import DeliveryStatus, IssueState
from tests.conftest import REPO, SAMPLE_ISSUE

from .helpers import add_deliveries, add_issue
from .test_web_serve import free_port

ATOM = "{http://www.w3.org/2005/Atom}"


def public(client: TestClient) -> tuple[list[str], list[str]]:
    """The slugs the archive page and the feed link to."""
    page = client.get("/").text
    feed = ET.fromstring(client.get("/feed.xml").content)
    hrefs = [link.get("href", "") for link in feed.iter(f"{ATOM}link")]
    return (
        [slug for slug in ("024-issue", "025-issue", "026-issue") if f"issues/{slug}" in page],
        sorted(h.rsplit("/", 1)[1] for h in hrefs if "/issues/" in h),
    )


def test_only_issues_with_a_delivered_copy_or_a_finished_send_are_public(
    client: TestClient, store: Store
) -> None:
    started = add_issue(store, 24, state=IssueState.SENDING)  # nothing delivered yet
    add_deliveries(store, started, DeliveryStatus.PENDING, DeliveryStatus.DEFERRED)
    failing = add_issue(store, 25, state=IssueState.SENDING)  # every attempt failed so far
    add_deliveries(store, failing, DeliveryStatus.FAILED, DeliveryStatus.PENDING)
    under_way = add_issue(store, 26, state=IssueState.SENDING)
    add_deliveries(store, under_way, DeliveryStatus.PENDING, DeliveryStatus.SENT)
    assert [i.number for i in archived_issues(store)] == [26]
    assert public(client) == (["026-issue"], ["026-issue"])
    for slug in ("024-issue", "025-issue"):
        assert archived_web_html(store, slug) is None
        assert client.get(f"/issues/{slug}").status_code == 404
    assert client.get("/issues/026-issue").status_code == 200
    # A send that finished is public even with no copy delivered (e.g. an empty list).
    finished = add_issue(store, 27, state=IssueState.SENT)
    add_deliveries(store, finished, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
    add_issue(store, 28, state=IssueState.SENT)
    assert [i.number for i in archived_issues(store)] == [28, 27, 26]
    assert client.get("/issues/027-issue").status_code == 200


def test_a_send_that_fails_before_any_message_publishes_nothing(
    client: TestClient, store: Store, config_env: Path, database_url: str
) -> None:
    subscribers.add_subscriber(store, "jane@example.org")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        PYTHONPATH=str(REPO),
        MAILER_DATABASE_URL=database_url,
        MAILER_LAYOUTS_DIR=str(REPO / "layouts"),
        MAILER_SMTP_URL=f"smtp://127.0.0.1:{free_port()}",  # nothing listens there
    )
    command = [sys.executable, "-m", "mailer", "send", str(SAMPLE_ISSUE), "--yes"]

    def send() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=config_env, env=env, capture_output=True, text=True, timeout=120
        )

    failed = send()
    assert failed.returncode == 1 and "cannot connect" in failed.stderr, failed.stderr
    # The send recorded the issue (it is resumable), yet nobody has it: nothing is public.
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT state FROM issues").scalars().all() == ["sending"]
    assert archived_issues(store) == []
    assert "No issue has been sent yet." in client.get("/").text
    assert client.get("/issues/025-may-2022").status_code == 404
    assert ET.fromstring(client.get("/feed.xml").content).findall(f"{ATOM}entry") == []

    sink = start_sink("127.0.0.1", 0, config_env / "maildir")
    env["MAILER_SMTP_URL"] = f"smtp://127.0.0.1:{sink.port}"
    try:
        resumed = send()
    finally:
        sink.stop()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [i.slug for i in archived_issues(store)] == ["025-may-2022"]
    assert client.get("/issues/025-may-2022").status_code == 200
