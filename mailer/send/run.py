"""The send run: ledger rows in, one SMTP transaction per row out, outcomes durably back.

Threads and what they own
-------------------------
* N **sender** threads, one per connection (``connections``); each owns one
  :class:`~mailer.send.transport.Connection` and loops: take a slot from the rate limiter,
  take a row, build its bytes, send the envelope and body, wait until its *previous*
  outcome is committed (the transport's ``gate``), send the final dot, read the reply.
* One **writer** thread owns every ledger write: it takes the outcomes queued by the senders,
  writes all that are waiting in ONE short transaction (group commit) and then acknowledges
  each of them. No transaction is ever open during network I/O.
* The rows come from a shared :class:`_Dispatch`: small keyset-paginated batches of
  ``pending`` rows (plus ``deferred`` with ``--retry``), read with the subscriber's current
  status, and an in-memory heap of 4xx rows waiting for their backoff.

Crash safety (the argument)
---------------------------
Invariant: *a sender thread commits a message to the server (sends the final dot of DATA,
the only moment a server may take responsibility for it) only after the outcome of its
previous message is committed to the ledger.* The writer commits before it acknowledges,
and the sender's gate waits for that acknowledgement right before the final dot (the
envelope and body are already sent by then, so the commit overlaps the transfer; if the
run stops instead, the connection is dropped without the dot and the server discards the
message). Hence at any instant each connection has at most one message whose outcome is not
durable: the one in flight (or just answered and not yet committed). Rows are only ever
marked ``sent`` after the server's 2xx to the final dot.

After ``kill -9`` at any moment a row is therefore either committed with its outcome (never
sent again) or still ``pending`` (sent again by the next run). The only rows that can be
delivered twice are those whose server had accepted the message when the process died,
which the invariant limits to one per open connection: at most ``connections`` duplicates
per kill, and none is skipped. Committing per *group* keeps this bound because a group only
contains outcomes whose senders are all blocked waiting for it. SQLite in WAL mode with
``synchronous=NORMAL`` keeps every committed transaction across a killed process (not
across a power cut); PostgreSQL commits are durable anyway. A copy resent after a crash
keeps its Message-ID, so receiving systems may drop the duplicate themselves.

Unsubscribes during a run: every row's subscriber status is read in the batch that hands it
out (batches are small and sized to the rate, so the read is at most a fraction of a second
old when the message goes), and re-read before a backoff retry. A subscriber no longer
active has their row marked ``skipped``.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mailer.compose.model import ComposedIssue
from mailer.config import Config
from mailer.errors import InvalidAddress, MailerError, NotFound, SendError, TransportError
from mailer.send.message import MessageFactory, Recipient, dkim_signer
from mailer.send.transport import Connection, Reply, Transport
from mailer.store.ledger import DeliveryResult, IssueFacts, IssueRecord, LedgerRow
from mailer.store.models import DeliveryStatus

# --- what the run needs from the outside ---------------------------------------------------


class Ledger(Protocol):
    """The ledger of one issue (see :class:`mailer.store.ledger.IssueLedger`)."""

    def next_rows(self, *, deferred_below: int, after_id: int, limit: int) -> list[LedgerRow]: ...

    def count_to_send(self, deferred_below: int) -> int: ...

    def still_active(self, subscriber_ids: Sequence[int]) -> set[int]: ...

    def record(self, results: Sequence[DeliveryResult]) -> None: ...

    def counts(self) -> dict[DeliveryStatus, int]: ...

    def finish(self) -> bool: ...

    def close(self) -> None: ...


class IssueStore(Protocol):
    """Recording an issue and opening its ledger."""

    def find(self, slug: str) -> IssueRecord | None: ...

    def start(self, facts: IssueFacts, *, force: bool) -> tuple[IssueRecord, int]: ...

    def count_active(self) -> int: ...

    def ledger(self, issue_id: int) -> Ledger: ...


# --- options -------------------------------------------------------------------------------

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|m|min|h|hour)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float | None:
    """``"100/s"`` -> 100.0 messages per second; ``""`` -> None (unlimited)."""
    if not text:
        return None
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise SendError(f"rate: {text!r} should look like 50/s, 3000/m or 10000/h")
    return float(match.group(1)) / _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class SendOptions:
    connections: int = 4
    rate: float | None = None  # messages per second, None = as fast as possible
    force: bool = False  # send although the content changed since the send started
    retry: bool = False  # also send rows left deferred by earlier runs
    attempts: int = 4  # tries per row for 4xx replies within one run
    backoff: float = 2.0  # seconds before the first retry, doubled each time
    max_backoff: float = 60.0
    batch: int = 100  # ledger rows read at once (capped by the rate, see _batch_size)
    # Stop after this many consecutive 5xx replies to the message itself (spam filter, size
    # limit...): they are about the issue, not the recipients, and would fail the whole list.
    message_refusals: int = 20

    def deferred_below(self) -> int:
        """Deferred rows tried fewer times than this are sent too (all of them with retry)."""
        return 2**31 - 1 if self.retry else self.attempts


@dataclass
class Progress:
    """Live counters for this run (a snapshot is handed to the progress callback)."""

    total: int = 0  # rows this run will try
    sent: int = 0
    failed: int = 0
    deferred: int = 0  # currently deferred (a retried row that succeeds moves to sent)
    skipped: int = 0
    bounced: int = 0
    retries: int = 0
    elapsed: float = 0.0

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def copy(self) -> Progress:
        return Progress(**self.__dict__)


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


def facts_of(issue: ComposedIssue) -> IssueFacts:
    meta = issue.meta
    return IssueFacts(
        slug=meta.slug,
        number=meta.number,
        subject=meta.subject,
        date=meta.date.isoformat(),
        content_hash=issue.content_hash,
        web_html=issue.web_html,
    )


def plan_send(issues: IssueStore, issue: ComposedIssue, options: SendOptions) -> Plan:
    """Check the issue against the ledger (ContentChanged unless --force) and count."""
    from mailer.store.ledger import check_content

    record = issues.find(issue.meta.slug)
    if record is None:
        return Plan(issue, None, issues.count_active(), 0, 0)
    check_content(record, facts_of(issue), force=options.force)
    ledger = issues.ledger(record.id)
    counts = ledger.counts()
    to_send = ledger.count_to_send(options.deferred_below())
    deferred_left = counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.DEFERRED] - to_send
    return Plan(issue, record, to_send, counts[DeliveryStatus.SENT], deferred_left)


def send_issue(
    issues: IssueStore,
    issue: ComposedIssue,
    config: Config,
    transport: Transport,
    options: SendOptions,
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Record the issue (snapshotting its recipients the first time) and deliver it."""
    record, snapshotted = issues.start(facts_of(issue), force=options.force)
    ledger = issues.ledger(record.id)
    before = ledger.counts()
    factory = MessageFactory(issue, config, signer=dkim_signer(config))
    run = _Run(ledger, factory, transport, options)
    run.progress.total = ledger.count_to_send(options.deferred_below())
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
        transport=transport.describe(),
    )


# --- the engine ----------------------------------------------------------------------------


class _Stopped(Exception):
    """The run is stopping: abandon the current message (it stays pending)."""


class _Ack:
    """Set once by the writer after the commit; waited on by one sender (a bare C lock,
    several times cheaper than threading.Event on this hot path)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()
        self._lock.release()


class _RateLimiter:
    """Evenly spaced send slots at ``per_second`` (no burst credit, so never above it)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self._interval
        delay = slot - time.monotonic()
        if delay > 0:
            stop.wait(delay)


@dataclass(order=True)
class _Retry:
    due: float
    seq: int
    row: LedgerRow = field(compare=False)
    tries: int = field(compare=False)


class _Dispatch:
    """Hands out rows to senders: fresh batches from the ledger, then due retries."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._cond = threading.Condition()
        self._buffer: deque[tuple[LedgerRow, int]] = deque()
        self._retries: list[_Retry] = []
        self._seq = itertools.count()
        self._after_id = 0
        self._exhausted = False
        self._in_flight = 0

    def take(self) -> tuple[LedgerRow, int] | None:
        """The next (row, tries so far this run), or None when the run is over."""
        run = self._run
        with self._cond:
            while not run.stop.is_set():
                now = time.monotonic()
                if self._retries and self._retries[0].due <= now:
                    retry = heapq.heappop(self._retries)
                    if retry.row.subscriber_id not in run.ledger.still_active(
                        [retry.row.subscriber_id]
                    ):
                        run.skip(retry.row)
                        continue
                    self._in_flight += 1
                    return retry.row, retry.tries
                if self._buffer:
                    self._in_flight += 1
                    return self._buffer.popleft()
                if not self._exhausted:
                    self._fill()
                    continue
                if self._retries:
                    self._cond.wait(self._retries[0].due - now)
                elif self._in_flight:
                    self._cond.wait()  # an answer may still schedule a retry
                else:
                    self._cond.notify_all()
                    return None
            return None

    def finished(self, row: LedgerRow, tries: int, retry_in: float | None) -> None:
        with self._cond:
            self._in_flight -= 1
            if retry_in is not None:
                heapq.heappush(
                    self._retries, _Retry(time.monotonic() + retry_in, next(self._seq), row, tries)
                )
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _fill(self) -> None:
        run = self._run
        options = run.options
        rows = run.ledger.next_rows(
            deferred_below=options.deferred_below(), after_id=self._after_id, limit=run.batch_size
        )
        if not rows:
            self._exhausted = True
            return
        self._after_id = rows[-1].delivery_id
        for row in rows:
            if row.active:
                # A resumed deferred row keeps its tries; --retry gives it a fresh budget.
                self._buffer.append((row, 0 if options.retry else row.attempts))
            else:
                run.skip(row)


class _Writer(threading.Thread):
    """Owns ledger writes: group commit, then acknowledge (see the module docstring)."""

    def __init__(self, run: _Run) -> None:
        super().__init__(name="ledger-writer", daemon=True)
        self._run = run
        self._queue: queue.SimpleQueue[tuple[DeliveryResult, _Ack | None] | None] = (
            queue.SimpleQueue()
        )
        self.error: BaseException | None = None

    def put(self, result: DeliveryResult, ack: _Ack | None = None) -> None:
        self._queue.put((result, ack))

    def close(self) -> None:
        self._queue.put(None)
        self.join()

    def run(self) -> None:
        closing = False
        while not closing:
            item = self._queue.get()
            group: list[tuple[DeliveryResult, _Ack | None]] = []
            while item is not None:
                group.append(item)
                if len(group) >= 1000:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            else:
                closing = True
            if not group:
                continue
            if self.error is None:
                try:
                    self._run.ledger.record([result for result, _ in group])
                    self._run.count([result for result, _ in group])
                except BaseException as exc:
                    self.error = exc
                    self._run.fail(exc)
            # After a failure, keep releasing senders (they see writer.error at their gate
            # and send nothing more) until the run closes the queue.
            for _, ack in group:
                if ack is not None:
                    ack.set()


class _Run:
    def __init__(
        self, ledger: Ledger, factory: MessageFactory, transport: Transport, options: SendOptions
    ) -> None:
        self.ledger = ledger
        self.factory = factory
        self.transport = transport
        self.options = options
        self.progress = Progress()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._deferred_ids: set[int] = set()
        self._refusals = 0  # consecutive 5xx replies to the message itself
        self._limiter = _RateLimiter(options.rate) if options.rate else None
        # With a rate, read batches that last ~0.2 s, so the "still subscribed" check is fresh.
        cap = max(1, int((options.rate or 1e9) * 0.2))
        self.batch_size = max(1, min(options.batch, cap))
        self.writer = _Writer(self)
        self.dispatch = _Dispatch(self)

    # -- called from any thread --

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stop.set()
        self.dispatch.wake()

    def skip(self, row: LedgerRow) -> None:
        self.writer.put(
            DeliveryResult(
                row.delivery_id,
                row.subscriber_id,
                DeliveryStatus.SKIPPED,
                reply="not sent: no longer subscribed",
                attempted=False,
            )
        )

    def count(self, results: Sequence[DeliveryResult]) -> None:
        with self._lock:
            p = self.progress
            for r in results:
                if r.delivery_id in self._deferred_ids and r.status is not DeliveryStatus.DEFERRED:
                    self._deferred_ids.discard(r.delivery_id)
                    p.deferred -= 1
                if r.status is DeliveryStatus.SENT:
                    p.sent += 1
                elif r.status is DeliveryStatus.FAILED:
                    p.failed += 1
                    p.bounced += r.bounced
                elif r.status is DeliveryStatus.SKIPPED:
                    p.skipped += 1
                elif r.delivery_id not in self._deferred_ids:
                    self._deferred_ids.add(r.delivery_id)
                    p.deferred += 1

    # -- main thread --

    def execute(self, on_progress: Callable[[Progress], None] | None) -> Progress:
        started = time.monotonic()
        self.writer.start()
        senders = [
            threading.Thread(target=self._sender, name=f"sender-{i}", daemon=True)
            for i in range(self.options.connections)
        ]
        for thread in senders:
            thread.start()
        try:
            while any(t.is_alive() for t in senders):
                for thread in senders:
                    thread.join(0.1)
                if on_progress is not None:
                    on_progress(self._snapshot(started))
        except KeyboardInterrupt:
            # Let every sender finish (and record) its current message, then stop.
            self.stop.set()
            self.dispatch.wake()
            for thread in senders:
                thread.join()
            self.writer.close()
            raise
        self.writer.close()
        final = self._snapshot(started)
        if on_progress is not None:
            on_progress(final)
        if self.error is not None:
            if isinstance(self.error, MailerError):
                raise self.error
            raise SendError(f"send stopped: {self.error!r}") from self.error
        return final

    def _snapshot(self, started: float) -> Progress:
        with self._lock:
            snap = self.progress.copy()
        snap.elapsed = time.monotonic() - started
        return snap

    # -- sender threads --

    def _sender(self) -> None:
        connection: Connection | None = None
        ack: _Ack | None = None  # the previous message's commit
        try:
            connection = self.transport.connect()
            while not self.stop.is_set():
                if self._limiter is not None:
                    self._limiter.wait(self.stop)
                    if self.stop.is_set():
                        break
                item = self.dispatch.take()
                if item is None:
                    break
                row, tries = item
                ack = self._deliver(connection, row, tries, ack)
            if ack is not None:
                ack.wait()
        except _Stopped:
            pass
        except BaseException as exc:
            self.fail(exc)
        finally:
            if connection is not None:
                connection.close()

    def _deliver(
        self, connection: Connection, row: LedgerRow, tries: int, previous: _Ack | None
    ) -> _Ack | None:
        recipient = Recipient(uid=row.uid, email=row.email, name=row.name)
        message_id = self.factory.message_id(recipient)
        try:
            message = self.factory.build(recipient, message_id)
        except InvalidAddress as exc:
            self.writer.put(
                DeliveryResult(
                    row.delivery_id, row.subscriber_id, DeliveryStatus.FAILED, reply=str(exc)
                )
            )
            self.dispatch.finished(row, tries, None)
            return previous

        # The invariant: the previous outcome is committed before this message is committed
        # to the server. The gate runs right before the final dot, so the envelope and body
        # travel while the writer commits.
        def gate() -> None:
            if previous is not None:
                previous.wait()
            if self.writer.error is not None or self.stop.is_set():
                raise _Stopped

        try:
            reply = connection.send(self.factory.envelope_from, row.email, message, gate)
        except BaseException:
            self.dispatch.finished(row, tries, None)
            raise
        tries += 1
        retry_in = None
        outcome = reply.outcome
        if outcome == "sent":
            status = DeliveryStatus.SENT
        elif outcome == "deferred":
            status = DeliveryStatus.DEFERRED
            if tries < self.options.attempts:
                retry_in = min(self.options.backoff * 2 ** (tries - 1), self.options.max_backoff)
        else:
            status = DeliveryStatus.FAILED
        self._watch_refusals(reply)
        ack = _Ack()
        self.writer.put(
            DeliveryResult(
                row.delivery_id,
                row.subscriber_id,
                status,
                reply=str(reply),
                message_id=message_id,
                bounced=status is DeliveryStatus.FAILED and reply.no_such_user,
            ),
            ack,
        )
        if retry_in is not None:
            with self._lock:
                self.progress.retries += 1
        self.dispatch.finished(row, tries, retry_in)
        return ack

    def _watch_refusals(self, reply: Reply) -> None:
        with self._lock:
            if reply.outcome == "failed" and reply.to_message:
                self._refusals += 1
            elif reply.outcome == "sent":
                self._refusals = 0
            refusals = self._refusals
        if refusals >= self.options.message_refusals:
            self.fail(
                TransportError(
                    f"the server refused the message itself {refusals} times in a row "
                    f"(last: {reply}); stopped so the rest of the list is not marked failed. "
                    "Fix the cause, then run the send again."
                )
            )


# --- test sends and dry runs ---------------------------------------------------------------


def persona_for_test_send(
    to: str, as_: str | None, lookup: Callable[[str], Recipient | None]
) -> Recipient | None:
    """Whom a test copy to ``to`` is personalised as: ``as_``, else ``to`` itself when it is
    a subscriber, else nobody (None: a made-up reader). Never silently another subscriber:
    their name and working unsubscribe link would go to someone else."""
    if as_:
        found = lookup(as_)
        if found is None:
            raise NotFound(f"no subscriber {as_}")
        return found
    return lookup(to)


def send_test(
    issue: ComposedIssue,
    config: Config,
    transport: Transport,
    to: str,
    persona: Recipient,
) -> Reply:
    """One "[TEST]" copy to ``to``, personalised as ``persona``; no ledger is touched."""
    factory = MessageFactory(issue, config, test=True, signer=dkim_signer(config))
    message = factory.build(persona, to=to)
    connection = transport.connect()
    try:
        reply = connection.send(factory.envelope_from, to, message)
    finally:
        connection.close()
    if reply.outcome != "sent":
        raise SendError(f"the server did not accept the test copy for {to}: {reply}")
    return reply


@dataclass(frozen=True)
class DryRun:
    messages: int
    total_bytes: int
    skipped: int
    invalid: tuple[str, ...]
    seconds: float


def dry_run(
    issue: ComposedIssue, config: Config, rows: Callable[[int, int], list[LedgerRow]]
) -> DryRun:
    """Render every message the run would send (``rows(after_id, limit)``), connect nowhere."""
    factory = MessageFactory(issue, config, signer=dkim_signer(config))
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
