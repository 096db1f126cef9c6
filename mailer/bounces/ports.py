"""What bounce processing trades with the store: value types and the one interface it calls.

Bounce processing (:mod:`mailer.bounces`) declares these; the store implements
:class:`BounceLedger` (:mod:`mailer.store.bounces`) and the CLI hands it over. So
``mailer.bounces`` never imports the store, and this module imports only the standard
library: the store may import it without pulling in the parsers.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Kind(enum.StrEnum):
    """What a report turns out to be, once it is proven ours."""

    HARD = "hard"  # the address is dead: the subscriber is bounced at once
    SOFT = "soft"  # temporary trouble: 3 issues in a row bounce the subscriber
    POLICY = "policy"  # refused for the sender's sake (spam block, DMARC): never held against them
    COMPLAINT = "complaint"  # "Report spam" via a feedback loop: complained at once
    IGNORED = "ignored"  # auto-replies, delay notices, reports that change nothing
    UNRECOGNISED = "unrecognised"  # proves nothing or cannot be read: for a person to look at


# Which kind of report may replace which on a delivery row (a complaint beats everything).
SEVERITY = {Kind.POLICY: 1, Kind.SOFT: 2, Kind.HARD: 3, Kind.COMPLAINT: 4}


@dataclass(frozen=True)
class Claim:
    """One piece of proof that a report answers a copy we sent.

    ``uid`` is the subscriber's full uid (List-Unsubscribe token) or its first 16 hex digits
    (VERP token); ``message_id`` is set instead for a Message-ID found in the report, which
    the store looks up in the ledger.
    """

    how: str  # "verp", "return-path", "unsubscribe", "message-id"
    uid: str = ""
    issue_number: int = 0
    message_id: str = ""


@dataclass(frozen=True)
class DeliveryRef:
    """The delivery a claim names, with what the rules need to know about it now."""

    delivery_id: int
    issue_id: int
    issue_number: int
    subscriber_id: int
    subscriber_status: str  # mailer.store.models.SubscriberStatus value
    bounce: str  # the kind already recorded on the delivery ("" for none)


@dataclass(frozen=True)
class Verdict:
    """What one report says, ready for the ledger."""

    key: str  # identifies the report's bytes: a re-run over a copy finds it processed
    kind: Kind
    shape: str  # "dsn", "arf", "text", "auto-reply", "none", ...
    status: str = ""  # the enhanced status code, e.g. "5.1.1" (or the ARF feedback type)
    diagnostic: str = ""  # the remote server's words, one line
    report_message_id: str = ""
    note: str = ""  # why it was ignored or not recognised
    source: str = ""  # "maildir", "imap" or "stdin"


@dataclass(frozen=True)
class Applied:
    """What recording a verdict did."""

    kind: Kind
    counted: bool  # False: the delivery already had this (or a worse) report
    new_status: str = ""  # the subscriber's new status, "" when it did not change
    note: str = ""


class BounceLedger(Protocol):
    """Reports processed so far, and their effect on deliveries and subscribers. Each call is
    one short transaction; calls from several processes at once are safe."""

    def processed(self, key: str) -> Kind | None:
        """The kind a report with ``key`` was recorded as, or None if it is new."""
        ...

    def resolve(self, claims: Sequence[Claim]) -> list[DeliveryRef | None]:
        """The delivery each claim names (None: no such delivery, e.g. a test copy or an
        erased subscriber, or a uid prefix that two subscribers share)."""
        ...

    def record(self, verdict: Verdict, delivery: DeliveryRef | None) -> Applied:
        """Record ``verdict`` (about ``delivery``, when there is one) and apply the rules:
        once per key (a second call for the same key changes nothing and returns the first
        kind with ``counted=False``)."""
        ...


# --- the rules, as pure functions the store applies inside its transaction -----------------

SOFT_LIMIT = 3  # soft bounces on this many consecutive issues bounce the subscriber


def soft_streak(bounces_newest_first: Sequence[str]) -> int:
    """How many consecutive issues, newest first, soft-bounced for one subscriber.

    ``bounces_newest_first`` holds the ``bounce`` of each delivery the server took, newest
    issue first. A clean issue ("") ends the streak (the mailbox worked again), so does a
    hard bounce or a complaint; a policy refusal says nothing about the mailbox: skipped.
    """
    streak = 0
    for bounce in bounces_newest_first:
        if bounce == Kind.SOFT:
            streak += 1
        elif bounce != Kind.POLICY:
            break
    return streak


@dataclass(frozen=True)
class Decision:
    counted: bool  # the report adds to the delivery's record (not a repeat of a worse one)
    new_status: str  # the subscriber's new status, "" to keep it
    note: bool  # add a line to the subscriber's history although the status stays


def decide(kind: Kind, subscriber_status: str, previous: str, streak: int) -> Decision:
    """What a report of ``kind`` does to a delivery whose worst report so far is
    ``previous`` and to its subscriber (``streak``: soft bounces in a row, this one
    included, see :func:`soft_streak`).

    A bounce or complaint never overwrites ``unsubscribed`` (it is only noted in the history);
    a complaint overrides ``bounced`` (both stop mail; a complaint is never undone by an
    import); a policy refusal never touches the subscriber.
    """
    before = SEVERITY.get(Kind(previous), 0) if previous else 0
    counted = SEVERITY.get(kind, 0) > before
    if kind is Kind.POLICY or not counted:
        return Decision(counted, "", False)
    if kind is Kind.COMPLAINT and subscriber_status in ("active", "bounced"):
        return Decision(True, "complained", False)
    if kind is Kind.HARD and subscriber_status == "active":
        return Decision(True, "bounced", False)
    if kind is Kind.SOFT and subscriber_status == "active" and streak >= SOFT_LIMIT:
        return Decision(True, "bounced", False)
    return Decision(True, "", True)
