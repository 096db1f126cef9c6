"""What the send needs from outside it: the values it trades and the small interfaces it calls.

The send declares these; the store implements them (:mod:`mailer.store.ledger`) and the CLI
hands the store's adapters to :class:`mailer.send.service.SendService`. So the send never
imports the store, and this module imports only the standard library and
:mod:`mailer.errors`: the store may import it without pulling in the rest of the send, and
importing it costs next to nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mailer.errors import ContentChanged

# --- values --------------------------------------------------------------------------------


class IssueState(enum.StrEnum):
    SENDING = "sending"  # recipients snapshotted, ledger has undelivered rows
    SENT = "sent"  # every ledger row is final (sent, failed or skipped)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # not yet attempted (or attempt not recorded: resend)
    SENT = "sent"  # the server answered 2xx to the end of DATA
    DEFERRED = "deferred"  # 4xx after the retries within a run; `send --retry` tries again
    FAILED = "failed"  # 5xx: permanent, never retried
    SKIPPED = "skipped"  # the subscriber left the list before their turn


@dataclass(frozen=True)
class Recipient:
    """Who a copy is for: the subscriber's opaque uid (for the token), address and name."""

    uid: str
    email: str
    name: str = ""


@dataclass(frozen=True)
class IssueRecord:
    """An issue as recorded when its send started."""

    id: int
    slug: str
    number: int
    subject: str
    content_hash: str
    state: IssueState


@dataclass(frozen=True)
class IssueFacts:
    """What identifies an issue's content (from the compose step)."""

    slug: str
    number: int
    subject: str
    date: str
    content_hash: str
    web_html: str
    # The parts personalisation fills (text with %%MAILER_...%% slots) and the preheader:
    # stored with the issue, so any worker sends exactly this (see StoredIssue).
    preheader: str = ""
    html: str = ""
    text: str = ""


@dataclass(frozen=True)
class StoredIssue:
    """An issue as stored when its send started: everything a worker on any host needs to
    build every copy, without the issue folder."""

    id: int
    facts: IssueFacts
    state: IssueState
    rate: float | None  # the issue's --rate (messages per second), shared by its workers


@dataclass(frozen=True)
class LedgerRow:
    """A delivery to attempt, with what the message needs and the subscriber's status now."""

    delivery_id: int
    subscriber_id: int
    uid: str
    email: str
    name: str
    active: bool
    attempts: int


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: int
    subscriber_id: int
    status: DeliveryStatus
    reply: str = ""
    message_id: str = ""
    bounced: bool = False  # the reply says the mailbox does not exist: mark the subscriber
    attempted: bool = True  # counts as an SMTP attempt (not for skipped rows)


def check_content(record: IssueRecord, facts: IssueFacts, *, force: bool) -> None:
    """Raise ContentChanged if the issue differs from the one whose send started."""
    if record.content_hash != facts.content_hash and not force:
        raise ContentChanged(
            f"issue {facts.slug} changed since its send started (content hash "
            f"{record.content_hash[:12]} -> {facts.content_hash[:12]}): some subscribers "
            "already have the earlier version. Re-run with --force to send the new version "
            "to the remaining recipients only."
        )


# --- interfaces ----------------------------------------------------------------------------


class Ledger(Protocol):
    """The ledger of one issue: one row per recipient, each read or write one short
    transaction (never one open across network I/O)."""

    def next_rows(self, *, deferred_below: int, after_id: int, limit: int) -> list[LedgerRow]:
        """The next ``limit`` rows to send after ``after_id`` (keyset pagination): pending
        ones, and deferred ones tried fewer than ``deferred_below`` times, each with its
        subscriber's status now."""
        ...

    def count_to_send(self, deferred_below: int) -> int:
        """How many rows :meth:`next_rows` would hand out in all."""
        ...

    def still_active(self, subscriber_ids: Sequence[int]) -> set[int]:
        """Which of ``subscriber_ids`` are active right now."""
        ...

    def record(self, results: Sequence[DeliveryResult], check: Sequence[int] = ()) -> set[int]:
        """Write ``results`` (bouncing subscribers as they say), then read which subscribers
        of ``check`` are active, and commit before returning those. The read must see every
        change committed before the call (a web unsubscribe answered by then). Called by one
        thread at a time; the send's hot path."""
        ...

    def counts(self) -> dict[DeliveryStatus, int]:
        """Rows per status (every status present, 0 when none)."""
        ...

    def finish(self) -> bool:
        """Mark the issue sent when no row is pending or deferred; return whether it is."""
        ...

    def close(self) -> None:
        """Release what :meth:`record` holds open (the ledger stays usable for reading)."""
        ...

    def held_elsewhere(self) -> float | None:
        """When :meth:`next_rows` has nothing: seconds until rows that other runs hold may
        be taken over (their leases run out), None when no other run holds any."""
        ...


class IssueStore(Protocol):
    """Recording issues and opening their ledgers."""

    def find(self, slug: str) -> IssueRecord | None: ...

    def start(self, facts: IssueFacts, *, force: bool) -> tuple[IssueRecord, int]:
        """Record the issue and snapshot its recipients atomically the first time; later
        check its content (see :func:`check_content`). Return (record, rows snapshotted)."""
        ...

    def count_active(self) -> int:
        """How many recipients a first :meth:`start` would snapshot."""
        ...

    def active_rows(self, *, after_id: int, limit: int) -> list[LedgerRow]:
        """The recipients a first :meth:`start` would snapshot, as would-be ledger rows
        (``delivery_id`` is the subscriber id), for a dry run that records nothing."""
        ...

    def ledger(self, issue_id: int) -> Ledger: ...

    def stored(self, slug: str) -> StoredIssue | None:
        """The composed issue stored when its send started (None: never started, or started
        before issues were stored whole)."""
        ...


class Lease(Protocol):
    """The run's hold on its issue (the store's send lock): while it holds, no second run
    sends the same rows."""

    def check(self) -> None:
        """Raise SendError if the hold is gone (the run must stop)."""
        ...


class ClaimLease(Lease, Protocol):
    """A cooperating run's lease on the rows it claims (renewed while the run is alive):
    :meth:`check` raises LeaseLost once it may have run out."""

    def release(self) -> None:
        """Stop renewing and give the rows not finished back at once."""
        ...


class RateSlots(Protocol):
    """An issue's ``--rate`` shared by all its runs: send slots reserved in the database."""

    def reserve(self, count: int) -> float:
        """Reserve the next ``count`` consecutive slots; seconds from now until the first."""
        ...


@dataclass(frozen=True)
class Joined:
    """A run's part in a cooperating send: its own claim, fenced ledger and lease."""

    record: IssueRecord
    stored: StoredIssue  # what every run of the issue sends
    snapshotted: int  # recipients recorded by this join (the first start only)
    others: int  # other runs holding a live lease when this one joined
    differs: bool  # the starter's facts differ from the stored version being sent
    ledger: Ledger
    lease: ClaimLease
    slots: RateSlots | None  # None: no --rate


class Claims(Protocol):
    """Cooperating senders on one database (PostgreSQL): each run claims small batches of
    ledger rows under a lease; every outcome it writes is fenced by its claim."""

    def join(
        self, facts: IssueFacts | None, slug: str, *, force: bool, rate: float | None
    ) -> Joined | None:
        """Register a fresh claim on issue ``slug``. With ``facts`` (a `mailer send`): record
        the issue and snapshot its recipients the first time; when no other run is live,
        check the content (ContentChanged unless ``force``, which stores the new version)
        and set the issue's rate; a joiner changes nothing and sends the stored version.
        Without (a worker): join a started issue only (None when it is not)."""
        ...

    def sending(self, deferred_below: int) -> list[str]:
        """Slugs of the issues being sent that have rows to claim now (pending, or deferred
        tried fewer than ``deferred_below`` times)."""
        ...


class SubscriberLookup(Protocol):
    """Finding a subscriber to personalise a test copy as."""

    def find(self, email: str) -> Recipient | None:
        """The subscriber with ``email`` (any status, case-insensitive), or None."""
        ...


# --- the sign-up outbox --------------------------------------------------------------------


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # to send (again, once next_attempt_at has come)
    SENT = "sent"  # the server answered 2xx to the end of DATA
    FAILED = "failed"  # 5xx, or the sign-up's link expired before it could go


@dataclass(frozen=True)
class OutboxMail:
    """One confirmation email claimed from the outbox by one drainer (``lease``)."""

    id: int
    to: str
    nonce: bytes  # signed into the link's token; the database keeps only its hash after
    attempts: int
    expires_at: datetime  # when the link stops working: no point sending it after
    lease: str


class Outbox(Protocol):
    """The sign-up outbox (implemented by :mod:`mailer.store.signup_outbox`).

    Several drainers may run at once (processes, hosts): a row is handed to one of them at a
    time (:meth:`claim` leases it) and its outcome is written only by the holder of the lease.
    """

    def due(self) -> bool:
        """Whether anything may be claimed now (a cheap read, no lock)."""
        ...

    def claim(self, *, limit: int, lease_seconds: float) -> list[OutboxMail]:
        """Lease up to ``limit`` rows due now to this caller, committed before returning."""
        ...

    def holds(self, mail: OutboxMail, *, lease_seconds: float) -> bool:
        """Renew ``mail``'s lease; False when another drainer has taken it (do not send)."""
        ...

    def sent(self, mail: OutboxMail, reply: str, message_id: str) -> None:
        """Final: delivered (committed before returning)."""
        ...

    def retry(self, mail: OutboxMail, reply: str, at: datetime) -> None:
        """Release the lease; try again at ``at`` (committed before returning)."""
        ...

    def failed(self, mail: OutboxMail, reply: str) -> None:
        """Final: never sent (committed before returning)."""
        ...

    def purge(self) -> int:
        """Delete expired sign-ups, their outbox rows and spent rate-limit counters; return how
        many sign-ups went."""
        ...
