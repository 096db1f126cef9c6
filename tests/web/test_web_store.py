"""The store's side of the links: batched unsubscribes (group commit) and the archive query."""

from __future__ import annotations

from mailer.store.db import Store
from mailer.store.models import DeliveryStatus, IssueState, SubscriberStatus
from mailer.store.unsubscribe import LinkUnsubscribe, unsubscribe_many

from .helpers import add_deliveries, add_issue, add_subscriber, events, reload


def test_unsubscribe_many_is_one_transaction_with_per_request_results(store: Store) -> None:
    may, june = add_issue(store, 25), add_issue(store, 26)
    a = add_subscriber(store, "anna@example.org")
    b = add_subscriber(store, "bob@example.org")
    c = add_subscriber(store, "carl@example.org", SubscriberStatus.COMPLAINED)
    d = add_subscriber(store, "dora@example.org", SubscriberStatus.BOUNCED)
    results = unsubscribe_many(
        store,
        [
            LinkUnsubscribe(a.uid, 25, "one-click"),
            LinkUnsubscribe("00" * 16, 25, "one-click"),  # unknown (or forgotten)
            LinkUnsubscribe(b.uid, 26, "web"),
            LinkUnsubscribe(a.uid, 26, "web"),  # the same person twice in one batch
            LinkUnsubscribe(c.uid, 25, "one-click"),
            LinkUnsubscribe(d.uid, 0, "one-click"),  # a test send's link
        ],
    )
    # can_resubscribe is per link: only the link whose unsubscribe of an active address this
    # was may undo it (not anna's June link, not dora's, who had bounced).
    assert [r and (r.email, r.status, r.can_resubscribe) for r in results] == [
        ("anna@example.org", SubscriberStatus.UNSUBSCRIBED, True),
        None,
        ("bob@example.org", SubscriberStatus.UNSUBSCRIBED, True),
        ("anna@example.org", SubscriberStatus.UNSUBSCRIBED, False),
        ("carl@example.org", SubscriberStatus.COMPLAINED, False),
        ("dora@example.org", SubscriberStatus.UNSUBSCRIBED, False),
    ]
    anna, bob, dora = reload(store, a), reload(store, b), reload(store, d)
    assert (anna.status_source, anna.status_issue_id) == ("one-click", may.id)
    assert (bob.status_source, bob.status_issue_id) == ("web", june.id)
    assert (dora.status_source, dora.status_issue_id, dora.status_reason) == (
        "one-click",
        None,
        "unsubscribe link of issue #0",
    )
    assert [(e.old_status, e.new_status, e.issue_id) for e in events(store, a)] == [
        ("active", "unsubscribed", may.id)
    ]
    assert [e.old_status for e in events(store, d)] == ["active", "bounced"]
    assert reload(store, c).status == SubscriberStatus.COMPLAINED
    # Again: nothing changes, the first record stays; the May link may still undo it.
    again = unsubscribe_many(
        store, [LinkUnsubscribe(a.uid, 26, "web"), LinkUnsubscribe(a.uid, 25, "web")]
    )
    assert [r and (r.status, r.can_resubscribe) for r in again] == [
        (SubscriberStatus.UNSUBSCRIBED, False),
        (SubscriberStatus.UNSUBSCRIBED, True),
    ]
    assert reload(store, a).status_changed_at == anna.status_changed_at
    assert len(events(store, a)) == 1


def test_archive_skips_test_sends(store: Store) -> None:
    from mailer.store.archive import archived_issues, archived_web_html

    add_issue(store, 0, state=IssueState.SENT)
    add_deliveries(store, add_issue(store, 3, state=IssueState.SENDING), DeliveryStatus.SENT)
    assert [i.number for i in archived_issues(store)] == [3]
    assert archived_web_html(store, "000-issue") is None
    assert archived_web_html(store, "003-issue") is not None


def test_wal_checkpoints_run_in_the_background(store: Store) -> None:
    from sqlalchemy import text

    from mailer.store.checkpoint import WalCheckpointer

    checkpointer = WalCheckpointer(store, interval=0.01)
    checkpointer.start()
    try:
        if store.engine.dialect.name != "sqlite":
            assert checkpointer._thread is None  # PostgreSQL: nothing to do
            return
        assert checkpointer._thread is not None and checkpointer._thread.is_alive()
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
        add_subscriber(store, "anna@example.org")
        checkpointer.checkpoint()
        # Everything in the log is in the database: nothing left to copy. A check that meets
        # the thread's own checkpoint is busy (SQLITE_BUSY) and tells nothing: ask again.
        for _ in range(100):
            with store.engine.connect() as conn:
                busy, log, copied = conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
            if not busy:
                break
        assert busy == 0 and log == copied
    finally:
        checkpointer.stop()
    assert checkpointer._thread is None
