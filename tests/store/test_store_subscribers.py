"""Subscriber operations: add, remove, show, list, count, status changes, forget."""

from __future__ import annotations

from datetime import UTC

import pytest
from sqlalchemy import func, select

from mailer.errors import InvalidAddress, InvalidAttribute, NotFound, StoreError
from mailer.store.addresses import address_hash
from mailer.store.db import Store
from mailer.store.models import (
    Delivery,
    ForgottenAddress,
    Issue,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
)
from mailer.store.subscribers import (
    add_subscriber,
    count_by_status,
    find_by_email,
    find_by_uid,
    forget,
    get_subscriber,
    list_subscribers,
    remove_subscriber,
    set_status,
)

ACTIVE, UNSUBSCRIBED = SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED


def _count(store: Store, model: type) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_add_stores_normalised_address_and_opaque_uid(store: Store) -> None:
    added = add_subscriber(store, " Jane@Example.ORG ", name="Jane", attributes={"org": "ISEI"})
    assert added.email == "Jane@example.org"
    assert len(added.uid) == 32 and "jane" not in added.uid
    got = get_subscriber(store, "JANE@example.org")
    assert (got.email, got.name, got.status, got.attributes) == (
        "Jane@example.org",
        "Jane",
        ACTIVE,
        {"org": "ISEI"},
    )
    # Timestamps come back timezone-aware on every backend.
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == UTC.utcoffset(None)
    with store.session() as s:
        found = find_by_uid(s, added.uid)
        assert found is not None and found.email == "Jane@example.org"
        assert find_by_uid(s, "0" * 32) is None
        assert find_by_email(s, "jane@EXAMPLE.org") is not None


def test_addresses_are_unique_case_insensitively(store: Store) -> None:
    add_subscriber(store, "jane@example.org")
    with pytest.raises(StoreError, match="already on the list"):
        add_subscriber(store, "JANE@Example.org")
    assert _count(store, Subscriber) == 1


def test_add_refuses_bad_input(store: Store) -> None:
    with pytest.raises(InvalidAddress, match="email"):
        add_subscriber(store, "not-an-address")
    with pytest.raises(InvalidAddress, match="name: contains a line break"):
        add_subscriber(store, "a@example.org", name="A\r\nBcc: x@example.org")
    with pytest.raises(InvalidAttribute, match="attribute 'Status': is a subscriber field"):
        add_subscriber(store, "a@example.org", attributes={"Status": "x"})
    with pytest.raises(InvalidAttribute, match="names must be non-empty, single-line"):
        add_subscriber(store, "a@example.org", attributes={"a\nb": "x"})
    assert _count(store, Subscriber) == 0


def test_unsubscribe_and_resubscribe_are_logged(store: Store) -> None:
    add_subscriber(store, "a@example.org")
    s, changed = set_status(store, "a@example.org", UNSUBSCRIBED, reason="asked by email")
    assert changed and s.status == UNSUBSCRIBED
    _, again = set_status(store, "A@example.org", UNSUBSCRIBED)
    assert not again  # idempotent: the first unsubscribe's time and reason are kept
    set_status(store, "a@example.org", ACTIVE, reason="asked again")
    got = get_subscriber(store, "a@example.org")
    history = [(e.old_status, e.new_status, e.source, e.reason) for e in got.events]
    assert history == [
        ("active", "unsubscribed", "cli", "asked by email"),
        ("unsubscribed", "active", "cli", "asked again"),
    ]
    with pytest.raises(NotFound, match=r"b@example\.org: not on the list"):
        set_status(store, "b@example.org", UNSUBSCRIBED)


def test_list_and_count_by_status(store: Store) -> None:
    for i in range(5):
        add_subscriber(store, f"u{i}@example.org")
    set_status(store, "u1@example.org", UNSUBSCRIBED)
    set_status(store, "u3@example.org", SubscriberStatus.BOUNCED)
    assert [s.email for s in list_subscribers(store, ACTIVE, batch=2)] == [
        "u0@example.org",
        "u2@example.org",
        "u4@example.org",
    ]
    assert len(list(list_subscribers(store))) == 5
    assert count_by_status(store) == {
        ACTIVE: 3,
        UNSUBSCRIBED: 1,
        SubscriberStatus.BOUNCED: 1,
        SubscriberStatus.COMPLAINED: 0,
    }


def test_remove_keeps_unsubscribes_unless_forced(store: Store) -> None:
    add_subscriber(store, "a@example.org")
    add_subscriber(store, "b@example.org")
    set_status(store, "b@example.org", UNSUBSCRIBED)
    remove_subscriber(store, "a@example.org")
    with pytest.raises(StoreError, match="is unsubscribed; removing would let a later import"):
        remove_subscriber(store, "b@example.org")
    remove_subscriber(store, "b@example.org", force=True)
    assert _count(store, Subscriber) == 0
    assert _count(store, SubscriberEvent) == 0
    with pytest.raises(NotFound):
        remove_subscriber(store, "a@example.org")


def _with_history(store: Store, email: str) -> None:
    add_subscriber(store, email, name="Jane")
    with store.session() as s, s.begin():
        issue = Issue(slug="025", number=25, subject="May", date="2022-05-01", content_hash="x")
        s.add(issue)
        s.flush()
        subscriber = find_by_email(s, email)
        assert subscriber is not None
        s.add(Delivery(issue_id=issue.id, subscriber_id=subscriber.id, last_reply=f"250 {email}"))
    set_status(store, email, UNSUBSCRIBED)


def test_forget_erases_subscriber_history_and_deliveries(store: Store) -> None:
    _with_history(store, "Jane@example.org")
    add_subscriber(store, "other@example.org")
    done = forget(store, "jane@EXAMPLE.org")
    assert done.was_subscribed
    assert _count(store, Subscriber) == 1
    assert _count(store, SubscriberEvent) == 0
    assert _count(store, Delivery) == 0
    assert _count(store, Issue) == 1
    with store.session() as s:
        hashes = s.scalars(select(ForgottenAddress.address_hash)).all()
    assert hashes == [address_hash("jane@example.org")]  # only a one-way hash remains
    # Forgotten addresses are not added back by accident...
    with pytest.raises(StoreError, match="was forgotten"):
        add_subscriber(store, "jane@example.org")
    # ...only when the person asks again (--force), which clears the hash.
    add_subscriber(store, "Jane@example.org", force=True)
    assert _count(store, ForgottenAddress) == 0


def test_forget_unknown_address_records_it(store: Store) -> None:
    assert not forget(store, "never@example.org").was_subscribed
    assert not forget(store, "never@example.org").was_subscribed  # idempotent
    assert _count(store, ForgottenAddress) == 1
