"""Sign-ups in the store: the limits, the outbox row, confirming, consent, purging, forgetting.

On SQLite and PostgreSQL (the `db` marker). Times are passed in, so nothing waits.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from mailer.store import limits, subscribers
from mailer.store.consent import consent_records, record_consent_text
from mailer.store.db import Store, open_store
from mailer.store.models import (
    ForgottenAddress,
    OutboxStatus,
    Signup,
    SignupMail,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
)
from mailer.store.signup_links import confirm_signup, signup_view
from mailer.store.signup_outbox import SqlOutbox
from mailer.store.signups import (
    CONFIRM_GRACE,
    Outcome,
    SignupLimits,
    SignupRequest,
    pending_signups,
    record_signup,
    resend_held,
)
from mailer.tokens import signup_lookup_hash

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
RULES = SignupLimits(
    per_client=5, client_window=timedelta(hours=1), per_hour=3, link_valid=timedelta(days=7)
)
TEXT = "Yes, send me the newsletter."


@pytest.fixture
def consent(store: Store) -> str:
    return record_consent_text(store, TEXT)


def request(email: str, consent: str, *, ip: str = "203.0.113.1", name: str = "") -> SignupRequest:
    return SignupRequest(email, email.lower(), name, "/subscribe", ip, consent)


def outbox(store: Store) -> list[SignupMail]:
    with store.session() as session:
        return list(session.scalars(select(SignupMail).order_by(SignupMail.id)))


def link_of(store: Store, email: str) -> str:
    """The token hash of the address's latest email (what its link's token leads to)."""
    with store.session() as session:
        mail = session.scalars(
            select(SignupMail)
            .join(Signup, Signup.id == SignupMail.signup_id)
            .where(Signup.email_key == email.lower())
            .order_by(SignupMail.id.desc())
        ).first()
        assert mail is not None
        return signup_lookup_hash(bytes.fromhex(mail.nonce))


def subscriber(store: Store, email: str) -> Subscriber | None:
    with store.session() as session:
        return session.scalars(
            select(Subscriber).where(Subscriber.email_key == email.lower())
        ).one_or_none()


def history(store: Store, email: str) -> list[tuple[str, str, str]]:
    with store.session() as session:
        query = (
            select(SubscriberEvent.old_status, SubscriberEvent.new_status, SubscriberEvent.source)
            .join(Subscriber)
            .where(Subscriber.email_key == email.lower())
            .order_by(SubscriberEvent.id)
        )
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def test_a_signup_is_recorded_with_its_email_apart_from_the_list(
    store: Store, consent: str
) -> None:
    done = record_signup(store, request("Jane@example.org", consent, name="Jane"), RULES, T0)
    assert done.outcome == Outcome.QUEUED
    [mail] = outbox(store)
    assert mail.status == OutboxStatus.PENDING and len(mail.nonce) == 32
    assert subscriber(store, "jane@example.org") is None  # not a subscriber until confirmed
    view = signup_view(store, link_of(store, "jane@example.org"), T0)
    assert view is not None and (view.email, view.name, view.consent_text) == (
        "Jane@example.org",
        "Jane",
        TEXT,
    )
    with store.session() as session:
        signup = session.scalars(select(Signup)).one()
        # The database holds the nonce's hash; the nonce itself only in the outbox row.
        assert signup.token_hash == signup_lookup_hash(bytes.fromhex(mail.nonce))
        assert mail.nonce not in (signup.token_hash or "")
        assert (signup.ip, signup.form, signup.consent_sha256) == (
            "203.0.113.1",
            "/subscribe",
            consent,
        )


def test_one_email_per_address_per_day(store: Store, consent: str) -> None:
    assert record_signup(store, request("a@example.org", consent), RULES, T0).outcome == "queued"
    for offset in (timedelta(minutes=1), timedelta(hours=23, minutes=59)):
        signup = request("A@EXAMPLE.org", consent, ip="198.51.100.9")
        again = record_signup(store, signup, RULES, T0 + offset)
        assert again.outcome == Outcome.ADDRESS_LIMITED
    assert len(outbox(store)) == 1
    first_link = signup_lookup_hash(bytes.fromhex(outbox(store)[0].nonce))
    with store.session() as session, session.begin():
        session.execute(update(SignupMail).values(status=OutboxStatus.SENT, nonce=""))
    later = record_signup(store, request("a@example.org", consent), RULES, T0 + timedelta(days=1))
    assert later.outcome == Outcome.QUEUED
    # A new email replaced the old link; the old email's row stays as it went.
    assert [m.status for m in outbox(store)] == [OutboxStatus.SENT, OutboxStatus.PENDING]
    assert signup_view(store, first_link, T0 + timedelta(days=1)) is None
    assert signup_view(store, link_of(store, "a@example.org"), T0 + timedelta(days=1))


def test_a_client_signing_up_too_often_is_not_recorded(store: Store, consent: str) -> None:
    rules = SignupLimits(5, timedelta(hours=1), 100, timedelta(days=7))
    outcomes = [
        record_signup(store, request(f"r{i}@example.org", consent), rules, T0).outcome
        for i in range(rules.per_client + 2)
    ]
    assert outcomes == [Outcome.QUEUED] * 5 + [Outcome.CLIENT_LIMITED] * 2
    assert len(outbox(store)) == 5
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Signup)) == 5
    # An IPv6 client counts by its /64; another client and the next hour are free.
    rules = SignupLimits(2, timedelta(hours=1), 100, timedelta(days=7))
    got = [
        record_signup(store, request(f"v{i}@example.org", consent, ip=ip), rules, T0).outcome
        for i, ip in enumerate(f"2001:db8:1:2::{i}" for i in range(3))
    ]
    assert got == [Outcome.QUEUED, Outcome.QUEUED, Outcome.CLIENT_LIMITED]
    later = T0 + timedelta(hours=1, seconds=1)
    assert record_signup(store, request("z@example.org", consent), rules, later).outcome == "queued"


def test_the_hourly_cap_holds_signups_for_the_operator(store: Store, consent: str) -> None:
    results = [
        record_signup(store, request(f"c{i}@example.org", consent, ip=f"203.0.113.{i}"), RULES, T0)
        for i in range(5)
    ]
    assert [r.outcome for r in results] == ["queued"] * 3 + ["held"] * 2
    assert [r.cap_reached_now for r in results] == [False, False, False, True, False]
    assert len(outbox(store)) == 3
    states = {s.email: s.state for s in pending_signups(store)}
    assert states == {f"c{i}@example.org": "mailing" if i < 3 else "held" for i in range(5)}
    # A held address was sent nothing: its day is not spent, and the operator may mail it.
    assert resend_held(store, RULES, T0 + timedelta(minutes=5)) == 2
    assert len(outbox(store)) == 5
    assert resend_held(store, RULES, T0 + timedelta(minutes=6)) == 0


def test_concurrent_signups_of_one_address_send_one_email(
    store: Store, consent: str, database_url: str
) -> None:
    """Eight workers (each its own engine, as separate processes have) at once."""
    stores = [open_store(database_url) for _ in range(8)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def sign_up(own: Store, n: int) -> None:
        barrier.wait()
        signup = request("race@example.org", consent, ip=f"198.51.100.{n}")
        done = record_signup(own, signup, RULES, T0)
        outcomes.append(done.outcome)

    threads = [threading.Thread(target=sign_up, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for own in stores:
        own.close()
    assert sorted(outcomes) == ["address-limited"] * 7 + ["queued"]
    assert len(outbox(store)) == 1


def test_confirming_makes_a_new_subscriber_with_proof_of_consent(
    store: Store, consent: str
) -> None:
    record_signup(store, request("new@example.org", consent, name="Neo"), RULES, T0)
    link = link_of(store, "new@example.org")
    later = T0 + timedelta(hours=2)
    done = confirm_signup(store, link, "Neo Anderson", later)
    assert done is not None and not done.again
    found = subscriber(store, "new@example.org")
    assert found is not None
    assert (found.status, found.status_source, found.name) == ("active", "signup", "Neo Anderson")
    assert history(store, "new@example.org") == [("", "active", "signup")]
    [record] = consent_records(store, found.id)
    assert (record.signed_up_at, record.confirmed_at) == (T0, later)
    assert (record.form, record.ip, record.text_sha256, record.text) == (
        "/subscribe",
        "203.0.113.1",
        consent,
        TEXT,
    )
    # The link's nonce is gone from the database once confirmed.
    assert all(mail.nonce == "" for mail in outbox(store))


def test_a_confirmed_link_answers_a_repeat_within_the_grace_then_is_gone(
    store: Store, consent: str
) -> None:
    record_signup(store, request("twice@example.org", consent), RULES, T0)
    link = link_of(store, "twice@example.org")
    first = confirm_signup(store, link, None, T0)
    assert first is not None and not first.again
    repeat = confirm_signup(store, link, "Other", T0 + CONFIRM_GRACE)
    assert repeat is not None and repeat.again
    found = subscriber(store, "twice@example.org")
    assert found is not None and found.name == ""  # the repeat changed nothing
    assert len(consent_records(store, found.id)) == 1
    assert confirm_signup(store, link, None, T0 + CONFIRM_GRACE + timedelta(seconds=1)) is None
    assert signup_view(store, link, T0 + CONFIRM_GRACE + timedelta(seconds=1)) is None


def test_an_expired_or_unknown_link_does_nothing(store: Store, consent: str) -> None:
    record_signup(store, request("late@example.org", consent), RULES, T0)
    link = link_of(store, "late@example.org")
    expired = T0 + RULES.link_valid
    assert signup_view(store, link, expired) is None
    assert confirm_signup(store, link, None, expired) is None
    assert confirm_signup(store, "0" * 64, None, T0) is None
    assert subscriber(store, "late@example.org") is None


@pytest.mark.parametrize(
    "status",
    [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED],
)
def test_a_returning_address_is_active_only_after_confirming_with_its_history(
    store: Store, consent: str, status: SubscriberStatus
) -> None:
    subscribers.add_subscriber(store, "back@example.org", name="Old Name")
    subscribers.set_status(store, "back@example.org", status, source="test")
    record_signup(store, request("back@example.org", consent), RULES, T0)
    found = subscriber(store, "back@example.org")
    assert found is not None and found.status == status  # signing up changes nothing
    view = signup_view(store, link_of(store, "back@example.org"), T0)
    assert view is not None and view.name == "Old Name"  # prefilled from the list
    assert confirm_signup(store, link_of(store, "back@example.org"), "Old Name", T0)
    found = subscriber(store, "back@example.org")
    assert found is not None and (found.status, found.status_source) == ("active", "signup")
    assert history(store, "back@example.org") == [
        ("active", status.value, "test"),
        (status.value, "active", "signup"),
    ]
    assert len(consent_records(store, found.id)) == 1


def test_an_active_subscriber_confirming_again_gets_a_new_consent_record(
    store: Store, consent: str
) -> None:
    subscribers.add_subscriber(store, "here@example.org")
    record_signup(store, request("here@example.org", consent), RULES, T0)
    assert confirm_signup(store, link_of(store, "here@example.org"), None, T0)
    found = subscriber(store, "here@example.org")
    assert found is not None and found.status_source == "cli"  # status untouched
    assert history(store, "here@example.org") == []
    assert len(consent_records(store, found.id)) == 1


def test_a_forgotten_address_that_confirms_is_a_fresh_subscriber(
    store: Store, consent: str
) -> None:
    subscribers.add_subscriber(store, "gone@example.org", name="Gone")
    subscribers.forget(store, "gone@example.org")
    record_signup(store, request("gone@example.org", consent), RULES, T0)
    assert confirm_signup(store, link_of(store, "gone@example.org"), None, T0)
    found = subscriber(store, "gone@example.org")
    assert found is not None and found.name == "" and found.status == "active"
    assert history(store, "gone@example.org") == [("", "active", "signup")]
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(ForgottenAddress)) == 0


def test_forget_erases_a_pending_signup_and_its_counter(store: Store, consent: str) -> None:
    record_signup(store, request("erase@example.org", consent), RULES, T0)
    subscribers.forget(store, "erase@example.org")
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Signup)) == 0
        keys = set(session.scalars(select(limits.SignupLimit.key)))
    assert limits.limit_key("to", "erase@example.org") not in keys
    assert outbox(store) == []


def test_purge_removes_spent_signups_and_counters(store: Store, consent: str) -> None:
    record_signup(store, request("old@example.org", consent), RULES, T0 - timedelta(days=8))
    record_signup(store, request("done@example.org", consent), RULES, T0 - timedelta(hours=1))
    confirm_signup(store, link_of(store, "done@example.org"), None, T0 - timedelta(minutes=11))
    record_signup(store, request("live@example.org", consent), RULES, T0)
    assert SqlOutbox(store).purge(T0) == 2
    assert [s.email for s in pending_signups(store)] == ["live@example.org"]
    assert [m.signup_id for m in outbox(store)] == [3]
    with store.session() as session:
        windows = list(session.scalars(select(limits.SignupLimit.window_end)))
    assert windows and all(end > T0 for end in windows)
    assert SqlOutbox(store).purge(T0) == 0
