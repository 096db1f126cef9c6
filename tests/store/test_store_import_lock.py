"""An import on SQLite keeps other writers out only for its short final merge."""

from __future__ import annotations

import io
import threading
import time

import pytest
from sqlalchemy import func, select

from mailer.store import import_staging
from mailer.store.csv_import import import_csv
from mailer.store.db import Store
from mailer.store.models import Subscriber, SubscriberStatus
from mailer.store.subscribers import add_subscriber, forget, get_subscriber, set_status
from mailer.store.unsubscribe import unsubscribe_by_link


def _count(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Subscriber)) or 0)


def _csv(n: int, *extra: str) -> io.StringIO:
    rows = [f"user{i}@example.org,User {i}" for i in range(n)]
    return io.StringIO("email,name\n" + "\n".join([*rows, *extra]) + "\n", newline="")


def test_unsubscribe_commits_while_an_import_is_parsing(store: Store, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the SQLite write lock (PostgreSQL locks rows)")
    reader = add_subscriber(store, "reader@example.org", name="Reader")
    done: list[float] = []
    finished_before_import: list[bool] = []

    def click() -> None:
        unsubscribe_by_link(store, reader.uid, 0, source="link")
        done.append(time.monotonic())

    def progress(rows: int) -> None:
        if rows < 2_000 or done:
            return
        # Mid-import: the web app's one-click unsubscribe must not wait for the import.
        started = time.monotonic()
        clicker = threading.Thread(target=click)
        clicker.start()
        clicker.join(timeout=8)  # the lock wait is 10 s: a 503 would come after it
        assert done, "the unsubscribe waited for the import"
        assert done[0] - started < 2
        finished_before_import.append(_count(store) == 1)  # the import's rows not yet there

    # The address the reader just unsubscribed comes last in the file, as active.
    result = import_csv(
        store, _csv(20_000, "Reader@example.org,Reader"), progress=progress, chunk_rows=1_000
    )
    assert done and finished_before_import == [True]
    assert (result.added, result.unchanged, result.kept_inactive) == (20_000, 1, 1)
    assert get_subscriber(store, "reader@example.org").status == SubscriberStatus.UNSUBSCRIBED


def _after_planning(monkeypatch: pytest.MonkeyPatch, meanwhile: object) -> None:
    """Run ``meanwhile()`` once the import has planned its merge, before it locks."""
    original = import_staging.Staging.finish

    def finish(self: import_staging.Staging) -> None:
        original(self)
        meanwhile()  # type: ignore[operator]

    monkeypatch.setattr(import_staging.Staging, "finish", finish)


def test_changes_after_planning_are_not_overridden(
    store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite plans its merge before it locks (PostgreSQL locks rows)")
    add_subscriber(store, "old@example.org", name="Old")
    add_subscriber(store, "gone@example.org")

    def meanwhile() -> None:
        set_status(store, "old@example.org", SubscriberStatus.UNSUBSCRIBED)
        # An address the plan would add turns up, and unsubscribes, before the merge.
        add_subscriber(store, "user3@example.org", name="Early")
        set_status(store, "user3@example.org", SubscriberStatus.UNSUBSCRIBED)
        forget(store, "gone@example.org")

    _after_planning(monkeypatch, meanwhile)
    result = import_csv(
        store, _csv(10, "OLD@example.org,Newer", "gone@example.org,Back"), chunk_rows=4
    )
    assert (result.added, result.updated, result.rejected) == (9, 2, 1)
    assert result.kept_inactive == 2
    assert [r.reason for r in result.rejects] == ["forgotten (erased on request)"]
    old = get_subscriber(store, "old@example.org")
    assert (old.name, old.status) == ("Newer", SubscriberStatus.UNSUBSCRIBED)
    early = get_subscriber(store, "user3@example.org")
    assert (early.name, early.status) == ("User 3", SubscriberStatus.UNSUBSCRIBED)
    assert _count(store) == 11  # 9 added, old, user3; gone stays gone


def test_merge_rules_hold_for_a_planned_merge(store: Store) -> None:
    add_subscriber(store, "user1@example.org", name="One")
    set_status(store, "user1@example.org", SubscriberStatus.BOUNCED)
    add_subscriber(store, "user2@example.org", name="Two")
    text = "email,name,status\nuser1@example.org,Uno,\nuser2@example.org,,unsubscribed\n"
    text += "user3@example.org,Three,\nuser3@example.org,,\n"
    result = import_csv(store, io.StringIO(text, newline=""), chunk_rows=1)
    assert (result.added, result.updated, result.duplicates, result.kept_inactive) == (1, 2, 1, 1)
    one, two = (
        get_subscriber(store, "user1@example.org"),
        get_subscriber(store, "user2@example.org"),
    )
    assert (one.name, one.status) == ("Uno", SubscriberStatus.BOUNCED)
    assert two.status == SubscriberStatus.UNSUBSCRIBED
    assert get_subscriber(store, "user3@example.org").name == "Three"
    result = import_csv(store, io.StringIO(text, newline=""), resubscribe=True)
    assert result.resubscribed == 1
    assert get_subscriber(store, "user1@example.org").status == SubscriberStatus.ACTIVE


def test_address_forgotten_while_the_file_is_read_is_not_added(store: Store) -> None:
    # SQLite: staged, then decided again under the lock; PostgreSQL: each chunk after the
    # forget is checked (tests/store/test_store_import_concurrency.py: an earlier chunk).
    forgotten: list[str] = []

    def progress(rows: int) -> None:
        if not forgotten:  # mid-file: the request arrives while the import reads
            forget(store, "user150@example.org")
            forgotten.append("user150@example.org")

    result = import_csv(store, _csv(200), progress=progress, chunk_rows=50)
    assert forgotten
    assert (result.added, result.rejected) == (199, 1)
    assert [r.reason for r in result.rejects] == ["forgotten (erased on request)"]
    assert _count(store) == 199
