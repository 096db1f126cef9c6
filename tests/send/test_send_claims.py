"""The claims of cooperating senders in the database (PostgreSQL): the content decided once,
writes fenced by the claim, takeover only after the lease ran out, shared rate slots."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from send_helpers import add_subscribers, make_issue
from workers_helpers import postgres_only

from mailer.errors import ContentChanged, LeaseLost
from mailer.send.ports import DeliveryResult, DeliveryStatus, Joined
from mailer.send.stored import facts_of
from mailer.store.claims import SqlClaims
from mailer.store.db import Store
from mailer.store.models import Delivery
from mailer.store.rate_slots import SqlRateSlots

SLUG = "025-may-2022"
BELOW = 4


def _join(claims: SqlClaims, **kwargs: object) -> Joined:
    facts = kwargs.pop("facts", facts_of(make_issue()))
    joined = claims.join(facts, SLUG, force=bool(kwargs.get("force")), rate=None)  # type: ignore[arg-type]
    assert joined is not None
    return joined


def _expire(store: Store, joined: Joined) -> None:
    """As if its process had been frozen past its lease."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE send_claims SET lease_until = now() - interval '1 second' WHERE token = :t"
            ),
            {"t": joined.ledger._fence[0]},  # type: ignore[attr-defined]
        )


def test_the_first_starter_decides_the_content_and_joiners_send_the_stored_one(
    store: Store,
) -> None:
    postgres_only(store)
    add_subscribers(store, 5)
    claims = SqlClaims(store, 60)
    first = _join(claims)
    changed = facts_of(make_issue(extra="<p>a correction</p>"))
    joiner = _join(claims, facts=changed, force=True)  # --force, but a run is sending
    assert joiner.others == 1 and joiner.differs
    assert joiner.stored.facts == first.stored.facts  # the stored version goes
    for part in (first, joiner):
        part.lease.release()
    with pytest.raises(ContentChanged):  # nobody sending: the usual rule
        _join(claims, facts=changed)
    forced = _join(claims, facts=changed, force=True)
    assert forced.others == 0 and not forced.differs and forced.stored.facts == changed
    forced.lease.release()
    worker = claims.join(None, SLUG, force=False, rate=None)  # a worker: no folder
    assert worker is not None and worker.stored.facts == changed
    worker.lease.release()


def test_rows_are_taken_over_only_after_the_lease_and_the_old_claim_is_fenced(
    store: Store,
) -> None:
    postgres_only(store)
    add_subscribers(store, 6)
    claims = SqlClaims(store, 60)
    a = _join(claims)
    rows = a.ledger.next_rows(deferred_below=BELOW, after_id=0, limit=6)
    assert len(rows) == 6
    b = _join(claims)
    assert b.ledger.next_rows(deferred_below=BELOW, after_id=0, limit=6) == []  # a holds them
    assert b.ledger.held_elsewhere() is not None  # b waits for them
    _expire(store, a)
    taken = b.ledger.next_rows(deferred_below=BELOW, after_id=0, limit=6)
    assert {r.delivery_id for r in taken} == {r.delivery_id for r in rows}
    # a, late: its outcome changes nothing, and it can neither renew nor claim again.
    a.ledger.record(
        [DeliveryResult(r.delivery_id, r.subscriber_id, DeliveryStatus.SENT) for r in rows]
    )
    with store.session() as session:
        statuses = set(session.scalars(sa.select(Delivery.status)))
    assert statuses == {DeliveryStatus.PENDING}
    with pytest.raises(LeaseLost):
        a.ledger.next_rows(deferred_below=BELOW, after_id=0, limit=6)
    with pytest.raises(LeaseLost):
        a.lease.check()
    b.ledger.record(
        [DeliveryResult(r.delivery_id, r.subscriber_id, DeliveryStatus.SENT) for r in taken]
    )
    with store.session() as session:
        assert set(session.scalars(sa.select(Delivery.status))) == {DeliveryStatus.SENT}
    for part in (a, b):
        part.ledger.close()
        part.lease.release()
    assert b.ledger.finish()


def test_rate_slots_of_two_runs_never_overlap(store: Store) -> None:
    postgres_only(store)
    add_subscribers(store, 1)
    joined = _join(SqlClaims(store, 60))
    one, two = (SqlRateSlots(store, joined.record.id, 1.0) for _ in range(2))

    def next_free() -> float:
        with store.engine.connect() as conn:
            query = sa.text("SELECT rate_next FROM issues WHERE id = :i")
            return float(conn.scalar(query, {"i": joined.record.id}))

    waits, ends = [], []
    for slots in (one, two, one):
        waits.append(slots.reserve(5))  # 5 slots at 1/s: five seconds each
        ends.append(next_free())
    # Each reservation starts exactly where the one before ended, whoever made it.
    assert ends[1] - ends[0] == pytest.approx(5.0) and ends[2] - ends[1] == pytest.approx(5.0)
    assert waits[0] < 1.0 and 4.0 < waits[1] <= 5.0 and 9.0 < waits[2] <= 10.0
    joined.lease.release()
