"""Sending an issue as `mailer send` does: plan, send, dry run, test copy.

:class:`SendService` is the one entry point. It is handed the store's adapters for the
send's ports (:mod:`mailer.send.ports`) by the CLI, decides what to read and what to send,
and drives the run (:mod:`mailer.send.run`); the CLI only parses options, confirms and
prints. Progress reaches the caller through a plain callback (:data:`~mailer.send.run.
OnProgress`), so no terminal library is imported here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailer.compose.model import ComposedIssue
from mailer.config import Config
from mailer.errors import InvalidAddress, LeaseLost, NotFound, SendError
from mailer.send.message import MessageFactory, dkim_signer
from mailer.send.ports import (
    Claims,
    DeliveryStatus,
    IssueRecord,
    IssueStore,
    Joined,
    Lease,
    LedgerRow,
    Recipient,
    SubscriberLookup,
    check_content,
)
from mailer.send.rate_limit import SharedRateLimiter
from mailer.send.run import OnProgress, Progress, Run, SendOptions
from mailer.send.stored import composed_of, facts_of
from mailer.send.transport import Reply, Transport, transport_from_config
from mailer.tokens import new_uid


@dataclass(frozen=True)
class Plan:
    """What a send would do, before anything is written (shown for confirmation)."""

    issue: ComposedIssue
    record: IssueRecord | None  # None: first send of this issue
    to_send: int  # rows this run would try
    already_sent: int
    deferred_left: int  # deferred rows a plain resume leaves for --retry


@dataclass(frozen=True)
class Summary:
    slug: str
    number: int
    subject: str
    snapshotted: int  # recipients recorded by this run (0 on a resume)
    already_sent: int  # delivered by earlier runs
    progress: Progress
    counts: dict[DeliveryStatus, int]
    finished: bool  # the issue is now marked sent (nothing pending or deferred)
    transport: str


@dataclass(frozen=True)
class DryRun:
    messages: int
    total_bytes: int
    skipped: int
    invalid: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class SentTestCopy:
    reply: Reply
    persona: Recipient | None  # the subscriber it was personalised as; None: a made-up one


class SendService:
    """`mailer send` over the store's ``issues`` and ``subscribers`` adapters.

    ``transport`` defaults to the one ``config`` describes, made the first time it is needed
    (a dry run never makes one).
    """

    def __init__(
        self,
        issues: IssueStore,
        subscribers: SubscriberLookup,
        config: Config,
        transport: Transport | None = None,
    ) -> None:
        self._issues = issues
        self._subscribers = subscribers
        self._config = config
        self._transport = transport

    @property
    def config(self) -> Config:
        return self._config

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = transport_from_config(self._config)
        return self._transport

    def plan(self, issue: ComposedIssue, options: SendOptions) -> Plan:
        """Check the issue against the ledger (ContentChanged unless --force) and count."""
        record = self._issues.find(issue.meta.slug)
        if record is None:
            return Plan(issue, None, self._issues.count_active(), 0, 0)
        check_content(record, facts_of(issue), force=options.force)
        ledger = self._issues.ledger(record.id)
        counts = ledger.counts()
        to_send = ledger.count_to_send(options.deferred_below())
        deferred_left = counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.DEFERRED] - to_send
        return Plan(issue, record, to_send, counts[DeliveryStatus.SENT], deferred_left)

    def settle(self, plan: Plan) -> None:
        """Nothing to send: bring a recorded issue's state up to date (sent when no row is
        pending or deferred)."""
        if plan.record is not None:
            self._issues.ledger(plan.record.id).finish()

    def send(
        self,
        issue: ComposedIssue,
        options: SendOptions,
        *,
        on_progress: OnProgress | None = None,
        lease: Lease | None = None,
    ) -> Summary:
        """Record the issue (snapshotting its recipients the first time) and deliver it;
        the run stops when ``lease`` (the issue's send lock) says it is lost."""
        record, snapshotted = self._issues.start(facts_of(issue), force=options.force)
        # What the store kept is what goes: the same bytes any worker of the issue builds.
        stored = self._issues.stored(record.slug)
        sent = composed_of(stored) if stored is not None else issue
        ledger = self._issues.ledger(record.id)
        before = ledger.counts()
        factory = MessageFactory(sent, self._config, signer=dkim_signer(self._config))
        total = ledger.count_to_send(options.deferred_below())
        run = Run(ledger, factory, self.transport, options, total=total, lease=lease)
        try:
            progress = run.execute(on_progress)
        finally:
            ledger.close()
        finished = ledger.finish()
        return Summary(
            slug=record.slug,
            number=record.number,
            subject=record.subject,
            snapshotted=snapshotted,
            already_sent=before[DeliveryStatus.SENT],
            progress=progress,
            counts=ledger.counts(),
            finished=finished,
            transport=self.transport.describe(),
        )

    def join(
        self,
        claims: Claims,
        slug: str,
        options: SendOptions,
        *,
        issue: ComposedIssue | None = None,
        on_progress: OnProgress | None = None,
        on_join: Callable[[Joined], None] | None = None,
        on_lost: Callable[[LeaseLost], None] | None = None,
    ) -> Summary | None:
        """Send issue ``slug`` together with every other run of it (cooperating senders,
        :class:`~mailer.send.ports.Claims`) until no row is left to claim: with ``issue``
        (a `mailer send`) recording it the first time, without (a worker) only joining a
        started one (None when it is not). The stored version is sent, at the issue's
        stored rate; a lost lease is followed by a fresh claim."""
        facts = facts_of(issue) if issue is not None else None
        while True:
            joined = claims.join(facts, slug, force=options.force, rate=options.rate)
            if joined is None:
                return None
            if on_join is not None:
                on_join(joined)
            try:
                return self._run_joined(joined, options, on_progress)
            except LeaseLost as lost:  # frozen or cut off past the lease: others' rows now
                if on_lost is not None:
                    on_lost(lost)

    def _run_joined(
        self, joined: Joined, options: SendOptions, on_progress: OnProgress | None
    ) -> Summary:
        rate = joined.stored.rate
        limiter = SharedRateLimiter(joined.slots, rate) if joined.slots and rate else None
        run_options = dataclasses.replace(options, rate=rate)
        composed = composed_of(joined.stored)
        factory = MessageFactory(composed, self._config, signer=dkim_signer(self._config))
        ledger = joined.ledger
        try:
            before = ledger.counts()
            total = ledger.count_to_send(options.deferred_below())
            run = Run(
                ledger,
                factory,
                self.transport,
                run_options,
                total=total,
                lease=joined.lease,
                limiter=limiter,
            )
            progress = run.execute(on_progress)
        finally:
            ledger.close()
            joined.lease.release()
        finished = ledger.finish()
        record = joined.record
        return Summary(
            slug=record.slug,
            number=record.number,
            subject=record.subject,
            snapshotted=joined.snapshotted,
            already_sent=before[DeliveryStatus.SENT],
            progress=progress,
            counts=ledger.counts(),
            finished=finished,
            transport=self.transport.describe(),
        )

    def dry_run(self, issue: ComposedIssue, *, retry: bool) -> DryRun:
        """Render every message a send would send now, and connect nowhere: the ledger's rows
        to send when the issue has one, else the subscribers a first send would snapshot."""
        record = self._issues.find(issue.meta.slug)
        factory = MessageFactory(issue, self._config, signer=dkim_signer(self._config))
        if record is None:
            return _render_all(
                factory, lambda after, limit: self._issues.active_rows(after_id=after, limit=limit)
            )
        ledger = self._issues.ledger(record.id)
        below = SendOptions(retry=retry).deferred_below()
        try:
            return _render_all(
                factory,
                lambda after, limit: ledger.next_rows(
                    deferred_below=below, after_id=after, limit=limit
                ),
            )
        finally:
            ledger.close()

    def test_copy(self, issue: ComposedIssue, to: str, as_: str | None) -> SentTestCopy:
        """One "[TEST]" copy to ``to``, personalised as :func:`persona_for_test_send` says;
        no ledger is touched."""
        chosen = persona_for_test_send(to, as_, self._subscribers)
        # A made-up reader: its unsubscribe link is valid-looking but unknown (the 404 page).
        persona = chosen or Recipient(new_uid(), to, "")
        transport = self.transport
        factory = MessageFactory(issue, self._config, test=True, signer=dkim_signer(self._config))
        message = factory.build(persona, to=to)
        connection = transport.connect()
        try:
            reply = connection.send(factory.envelope_from, factory.envelope_to(to), message)
        finally:
            connection.close()
        if reply.outcome != "sent":
            raise SendError(f"the server did not accept the test copy for {to}: {reply}")
        return SentTestCopy(reply, chosen)


def persona_for_test_send(
    to: str, as_: str | None, subscribers: SubscriberLookup
) -> Recipient | None:
    """Whom a test copy to ``to`` is personalised as: ``as_``, else ``to`` itself when it is
    a subscriber, else nobody (None: a made-up reader). Never silently another subscriber:
    their name and working unsubscribe link would go to someone else."""
    if as_:
        found = subscribers.find(as_)
        if found is None:
            raise NotFound(f"no subscriber {as_}")
        return found
    return subscribers.find(to)


def _render_all(factory: MessageFactory, rows: Callable[[int, int], list[LedgerRow]]) -> DryRun:
    """Build every message of ``rows(after_id, limit)`` (keyset pages) and count."""
    started = time.monotonic()
    after, messages, size, skipped = 0, 0, 0, 0
    invalid: list[str] = []
    while batch := rows(after, 500):
        after = batch[-1].delivery_id
        for row in batch:
            if not row.active:
                skipped += 1
                continue
            try:
                size += len(factory.build(Recipient(row.uid, row.email, row.name)))
            except InvalidAddress:
                invalid.append(row.email)
                continue
            messages += 1
    return DryRun(messages, size, skipped, tuple(invalid), time.monotonic() - started)
