"""Cooperating senders on PostgreSQL: claims on ledger rows, leases, fencing.

Several runs (``mailer send`` processes, ``mailer worker`` processes, on any host) send one
issue together. Each run registers a **claim** (a ``send_claims`` row: a random token and a
lease, ``lease_until``, renewed by the run while it is alive) and takes small batches of
``pending`` rows with ``SELECT ... FOR UPDATE SKIP LOCKED``, writing its token into each row's
``claim``. Every outcome it writes is **fenced** by that token (``UPDATE ... WHERE id = ? AND
claim = ?``): once another run has taken a row over, the first run's late write changes
nothing. A run's local view of its lease is conservative (its deadline counts from *before*
the renewal was sent), and a renewal is refused once the lease ran out in the database's
clock, so a run that was frozen past its lease learns it lost the lease before it could send
the final dot of any row another run may have taken (its gate checks the lease, see
:mod:`mailer.send.run`); it then stops and joins again with a new token (a new epoch).

Taking over: the rows of a claim whose lease ran out (a killed run) are taken like unclaimed
ones. The expired claims are locked first (``FOR UPDATE``), which waits for a renewal in
flight and re-reads it, so a claim renewed in time is never taken over; a row whose claim
changed meanwhile is re-checked against the new token by PostgreSQL before it is locked.
A run that ends gives its unfinished rows back at once (``claim = ''``). Claims are deleted by
their runs as they end, dead ones with their issue's end (every row final), so no open row
ever points at a vanished claim.

SQLite has one writer: there a second run of an issue stays refused
(:mod:`mailer.store.send_lock`), and none of this is used.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from mailer.errors import LeaseLost
from mailer.send.ports import (
    IssueFacts,
    Joined,
    LedgerRow,
    check_content,
)
from mailer.store.composed import keep_composed, stored_of
from mailer.store.db import Store
from mailer.store.ledger import SqlLedger, _new_issue, _record, _snapshot
from mailer.store.models import Delivery, Issue, SendClaim, SubscriberStatus
from mailer.store.rate_slots import SqlRateSlots

# What a run may send: pending rows and deferred ones with tries left (see ledger._to_send).
_OPEN = "(d.status = 'pending' OR (d.status = 'deferred' AND d.attempts < :below))"

_RENEW = text(
    "UPDATE send_claims SET lease_until = clock_timestamp() + make_interval(secs => :secs) "
    "WHERE token = :token AND lease_until > clock_timestamp()"
)
_EXPIRED = text(
    "SELECT token FROM send_claims WHERE issue_id = :issue AND token <> :token "
    "AND lease_until <= clock_timestamp() FOR UPDATE"
)
_CLAIM = text(f"""
WITH picked AS (
    SELECT d.id FROM deliveries d
    WHERE d.issue_id = :issue AND {_OPEN} AND (d.claim = '' OR d.claim = ANY(:expired))
    LIMIT :limit  -- in no particular order: the index's, without sorting every open row
    FOR UPDATE OF d SKIP LOCKED
), taken AS (
    UPDATE deliveries SET claim = :token FROM picked WHERE deliveries.id = picked.id
    RETURNING deliveries.id, deliveries.subscriber_id, deliveries.attempts
)
SELECT taken.id, taken.subscriber_id, s.uid, s.email, s.name, s.status, taken.attempts
FROM taken JOIN subscribers s ON s.id = taken.subscriber_id ORDER BY taken.id
""")
_HELD = text(f"""
SELECT EXTRACT(EPOCH FROM min(c.lease_until) - clock_timestamp()) FROM send_claims c
WHERE c.issue_id = :issue AND c.token <> :token AND c.lease_until > clock_timestamp()
AND EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = :issue AND d.claim = c.token
            AND {_OPEN})
""")
_RELEASE = text(
    "UPDATE deliveries SET claim = '' WHERE issue_id = :issue AND claim = :token "
    "AND status IN ('pending', 'deferred')"
)
_CLAIMABLE = text(f"""
SELECT i.slug FROM issues i
WHERE i.state = 'sending' AND i.html_template <> '' AND EXISTS (
    SELECT 1 FROM deliveries d WHERE d.issue_id = i.id AND {_OPEN} AND (d.claim = ''
    OR EXISTS (SELECT 1 FROM send_claims c WHERE c.token = d.claim
               AND c.lease_until <= clock_timestamp())))
ORDER BY i.id
""")


def cooperating(store: Store) -> bool:
    """Whether several runs may send one issue together here (PostgreSQL), rather than one
    at a time under the send lock (SQLite)."""
    return store.engine.dialect.name == "postgresql"


class SqlLeaseKeeper(threading.Thread):
    """A claim's lease, renewed every third of it by a thread; :meth:`check` raises
    LeaseLost once the local deadline passed (counted from before each renewal was sent,
    minus a margin) or a renewal was refused."""

    def __init__(self, store: Store, token: str, seconds: float, since: float) -> None:
        super().__init__(name="send-lease", daemon=True)
        self.store = store
        self.token = token
        self.seconds = seconds
        self._margin = min(seconds * 0.2, 5.0)
        self._deadline = since + seconds - self._margin
        self._lost = threading.Event()
        self._stopping = threading.Event()
        self.release_rows: tuple[int, ...] = ()  # set by the claiming ledger: its issue

    def check(self) -> None:
        if self._lost.is_set() or time.monotonic() >= self._deadline:
            self._lost.set()
            raise LeaseLost(
                "this run's lease on its rows ran out (it was frozen, or the database was "
                "unreachable for longer than send_lease_seconds); it sent nothing more of them"
            )

    def renewed(self, since: float) -> None:
        """A renewal sent at ``since`` (monotonic) succeeded."""
        self._deadline = max(self._deadline, since + self.seconds - self._margin)

    def renew_in(self, session: Session) -> None:
        """Renew in ``session``'s transaction (LeaseLost if refused); counts once committed
        (the caller calls :meth:`renewed`)."""
        done = session.execute(_RENEW, {"token": self.token, "secs": self.seconds})
        if not done.rowcount:  # type: ignore[attr-defined]
            self._lost.set()
            self.check()

    def run(self) -> None:
        while not self._stopping.wait(self.seconds / 3):
            since = time.monotonic()
            try:
                with self.store.session() as session, session.begin():
                    self.renew_in(session)
                self.renewed(since)
            except LeaseLost:
                return
            except SQLAlchemyError:
                continue  # the database is away: check() says so once the deadline passes

    def release(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join()
        try:
            with self.store.session() as session, session.begin():
                for issue_id in self.release_rows:
                    session.execute(_RELEASE, {"issue": issue_id, "token": self.token})
                session.execute(delete(SendClaim).where(SendClaim.token == self.token))
        except SQLAlchemyError:
            pass  # unreachable: the lease runs out by itself and the rows are taken over


class ClaimedLedger(SqlLedger):
    """The ledger of one issue as one cooperating run sees it: :meth:`next_rows` claims a
    batch (renewing the lease in the same transaction), every write is fenced by the claim."""

    def __init__(self, store: Store, issue_id: int, lease: SqlLeaseKeeper) -> None:
        super().__init__(store, issue_id)
        self.lease = lease
        self._fence = (lease.token,)
        lease.release_rows = (issue_id,)

    def _fenced(self, mark: str) -> str:
        return f" AND claim = {mark}"

    def next_rows(self, *, deferred_below: int, after_id: int, limit: int) -> list[LedgerRow]:
        # after_id is not used: claimed rows leave the pool, and rows of an expired claim
        # come back into it wherever they are.
        since = time.monotonic()
        token = self.lease.token
        with self.store.session() as session, session.begin():
            self.lease.renew_in(session)
            expired = list(session.scalars(_EXPIRED, {"issue": self.issue_id, "token": token}))
            rows = session.execute(
                _CLAIM,
                {
                    "issue": self.issue_id,
                    "below": deferred_below,
                    "expired": expired,
                    "limit": limit,
                    "token": token,
                },
            ).all()
        self.lease.renewed(since)
        return [
            LedgerRow(
                r[0], r[1], r[2], r[3], r[4] or "", r[5] == SubscriberStatus.ACTIVE.value, r[6]
            )
            for r in rows
        ]

    def held_elsewhere(self) -> float | None:
        # Rows held by live runs: tried again when their leases may have run out (and sooner,
        # see Dispatch: they may finish them themselves).
        with self.store.session() as session:
            left = session.scalar(
                _HELD, {"issue": self.issue_id, "token": self.lease.token, "below": 2**31 - 1}
            )
        return None if left is None else max(0.0, float(left))

    def finish(self) -> bool:
        done = super().finish()
        if done:  # every row is final: dead runs' claims point at nothing open any more
            with self.store.session() as session, session.begin():
                session.execute(
                    delete(SendClaim).where(
                        SendClaim.issue_id == self.issue_id,
                        SendClaim.lease_until <= func.clock_timestamp(),
                    )
                )  # (live ones are deleted by their runs as they end)
        return done


class SqlClaims:
    """:class:`~mailer.send.ports.Claims` in a PostgreSQL :class:`Store`."""

    def __init__(self, store: Store, lease_seconds: float) -> None:
        self.store = store
        self.lease_seconds = lease_seconds

    def join(
        self, facts: IssueFacts | None, slug: str, *, force: bool, rate: float | None
    ) -> Joined | None:
        try:
            return self._join(facts, slug, force=force, rate=rate)
        except IntegrityError:  # two first starts at once: the other recorded it, join that
            return self._join(facts, slug, force=force, rate=rate)

    def _join(
        self, facts: IssueFacts | None, slug: str, *, force: bool, rate: float | None
    ) -> Joined | None:
        token = secrets.token_hex(16)
        since = time.monotonic()
        with self.store.session() as session, session.begin():
            issue = session.scalars(
                select(Issue).where(Issue.slug == slug).with_for_update()
            ).one_or_none()
            snapshotted, first = 0, issue is None
            if issue is None:
                if facts is None:
                    return None
                issue = _new_issue(session, facts)
                issue.rate = rate
                session.execute(_snapshot(issue.id))
                snapshotted = _count_rows(session, issue.id)
            others = _live_claims(session, issue.id)
            differs = facts is not None and facts.content_hash != issue.content_hash
            if facts is not None and not first and not others:  # this run decides
                check_content(_record(issue), facts, force=force)
                if differs or not issue.html_template:
                    keep_composed(issue, facts)
                issue.rate, differs = rate, False
            stored = stored_of(issue)
            if stored is None:  # started before issues were stored whole: needs the folder
                return None
            session.execute(
                insert(SendClaim).values(
                    token=token,
                    issue_id=issue.id,
                    lease_until=func.clock_timestamp()
                    + func.make_interval(0, 0, 0, 0, 0, 0, self.lease_seconds),
                    host=socket.gethostname()[:200],
                )
            )
            record = _record(issue)
        lease = SqlLeaseKeeper(self.store, token, self.lease_seconds, since)
        lease.start()
        slots = SqlRateSlots(self.store, record.id, stored.rate) if stored.rate else None
        return Joined(
            record=record,
            stored=stored,
            snapshotted=snapshotted,
            others=others,
            differs=differs,
            ledger=ClaimedLedger(self.store, record.id, lease),
            lease=lease,
            slots=slots,
        )

    def sending(self, deferred_below: int) -> list[str]:
        with self.store.session() as session:
            return list(session.scalars(_CLAIMABLE, {"below": deferred_below}))


def _count_rows(session: Session, issue_id: int) -> int:
    count = select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue_id)
    return int(session.scalar(count) or 0)


def _live_claims(session: Session, issue_id: int) -> int:
    live = (
        select(func.count())
        .select_from(SendClaim)
        .where(SendClaim.issue_id == issue_id, SendClaim.lease_until > func.clock_timestamp())
    )
    return int(session.scalar(live) or 0)
