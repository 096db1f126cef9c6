"""The send run: ledger rows in, one SMTP transaction per row out, outcomes durably back.

Threads and what they own
-------------------------
* N **sender** threads, one per connection (``connections``); each owns one
  :class:`~mailer.send.transport.Connection` and loops: take a slot from the rate limiter,
  take a row, build its bytes, send the envelope and body, wait until its *previous*
  outcome is committed (the transport's ``gate``), send the final dot, read the reply.
* One **writer** thread (:class:`~mailer.send.writer.Writer`) owns every ledger write: it
  takes the outcomes queued by the senders, writes all that are waiting in ONE short
  transaction (group commit) and then acknowledges each of them. No transaction is ever
  open during network I/O.
* The rows come from a shared :class:`~mailer.send.dispatch.Dispatch`: small
  keyset-paginated batches of ``pending`` rows (plus ``deferred`` with ``--retry``), read
  with the subscriber's current status, and an in-memory heap of 4xx rows waiting for their
  backoff.

This module is the engine (:class:`Run`: the sender threads and their gate). The writer is
in :mod:`mailer.send.writer`, the dispatch in :mod:`mailer.send.dispatch`, the pacing in
:mod:`mailer.send.rate_limit`; what the run needs from the store is declared in
:mod:`mailer.send.ports`, and :mod:`mailer.send.service` plans and starts runs.

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
out, re-read before a backoff retry, and read once more at the gate, after the message's
body has gone and right before its final dot (the writer answers the checks of all senders
waiting at that moment with one query, in its group's transaction). A subscriber no longer
active has their row marked ``skipped``; one who left while the body was on its way has the
message abandoned without the final dot (the server discards it; the connection is
reopened). So an unsubscribe committed (answered 200) before a message's final dot stops
that message; only one committed during the last round trip of a transaction can race it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailer.errors import InvalidAddress, MailerError, SendError, TransportError
from mailer.send.dispatch import Dispatch, batch_size
from mailer.send.message import MessageFactory
from mailer.send.ports import (
    DeliveryResult,
    DeliveryStatus,
    Lease,
    Ledger,
    LedgerRow,
    Recipient,
)
from mailer.send.rate_limit import Pacer, RateLimiter
from mailer.send.transport import Connection, Reply, Transport
from mailer.send.writer import Ack, Check, Writer

# --- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendOptions:
    connections: int = 4
    rate: float | None = None  # messages per second, None = as fast as possible
    force: bool = False  # send although the content changed since the send started
    retry: bool = False  # also send rows left deferred by earlier runs
    attempts: int = 4  # tries per row for 4xx replies within one run
    backoff: float = 2.0  # seconds before the first retry, doubled each time
    max_backoff: float = 60.0
    batch: int = 100  # ledger rows read at once (capped by the rate, see batch_size)
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


# Called from the main thread about ten times a second, and once at the end, with a snapshot.
# Raising KeyboardInterrupt from it stops the run as Ctrl-C does.
OnProgress = Callable[[Progress], None]


# --- the engine ----------------------------------------------------------------------------


class _Stopped(Exception):
    """The run is stopping: abandon the current message (it stays pending)."""


class _Unsubscribed(Exception):
    """The recipient left the list while their message was on its way: abandon it."""


class Run:
    """One run over ``ledger``: ``total`` rows to try (for the progress), see the module
    docstring for the threads and the crash-safety argument."""

    def __init__(
        self,
        ledger: Ledger,
        factory: MessageFactory,
        transport: Transport,
        options: SendOptions,
        *,
        total: int,
        lease: Lease | None = None,
        limiter: Pacer | None = None,
    ) -> None:
        self.factory = factory
        self.lease = lease
        self.transport = transport
        self.options = options
        self.progress = Progress(total=total)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._deferred_ids: set[int] = set()
        self._refusals = 0  # consecutive 5xx replies to the message itself
        self._limiter: Pacer | None = limiter
        if limiter is None and options.rate:
            self._limiter = RateLimiter(options.rate)
        self.writer = Writer(ledger.record, self.count, self.fail)
        self.dispatch = Dispatch(
            ledger,
            self.stop,
            self.skip,
            deferred_below=options.deferred_below(),
            batch_size=batch_size(options.batch, options.rate),
            keep_tries=not options.retry,
        )

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

    def execute(self, on_progress: OnProgress | None) -> Progress:
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
                self._check_lease()  # also while no message is going (backoffs)
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

    def _check_lease(self) -> None:
        if self.lease is not None and not self.stop.is_set():
            try:
                self.lease.check()
            except SendError as exc:
                self.fail(exc)

    def _snapshot(self, started: float) -> Progress:
        with self._lock:
            snap = self.progress.copy()
        snap.elapsed = time.monotonic() - started
        return snap

    # -- sender threads --

    def _sender(self) -> None:
        connection: Connection | None = None
        ack: Ack | None = None  # the previous message's commit
        try:
            connection = self.transport.connect()
            while not self.stop.is_set():
                # A row first, then its slot: a sender with nothing left to send ends now,
                # not after waiting for a slot it would not use (at 6/m, 10 s each).
                item = self.dispatch.take()
                if item is None:
                    break
                row, tries = item
                if self._limiter is not None:
                    self._limiter.wait(self.stop)
                    if self.stop.is_set():
                        self.dispatch.finished(row, tries, None)  # still pending: resumed
                        break
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
        self, connection: Connection, row: LedgerRow, tries: int, previous: Ack | None
    ) -> Ack | None:
        """Send one row; return the ack of its outcome's commit (``previous`` if nothing
        went to the server)."""
        recipient = Recipient(uid=row.uid, email=row.email, name=row.name)
        message_id = self.factory.message_id(recipient)
        try:
            message = self.factory.build(recipient, message_id)
            rcpt = self.factory.envelope_to(row.email)
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
        # travel while the writer commits. The check answered there is read after every
        # earlier outcome is committed (so the previous one is durable once it is answered)
        # and after this message's body went: an unsubscribe committed before that moment
        # stops the message.
        def gate() -> None:
            if self.lease is not None:
                self.lease.check()  # raises: this message is abandoned and the run stops
            check = Check(row.subscriber_id)
            self.writer.check(check)
            check.wait()
            if previous is not None:
                previous.wait()  # done already: queued before the check
            if self.writer.error is not None or self.stop.is_set():
                raise _Stopped
            if not check.active:
                raise _Unsubscribed

        try:
            envelope_from = self.factory.envelope_for(recipient)
            reply = connection.send(envelope_from, rcpt, message, gate)
        except _Unsubscribed:  # abandoned before the final dot: the server discards it
            self.skip(row)
            self.dispatch.finished(row, tries, None)
            return previous
        except BaseException:
            self.dispatch.finished(row, tries, None)
            raise
        return self._answered(row, tries + 1, reply, message_id)

    def _answered(self, row: LedgerRow, tries: int, reply: Reply, message_id: str) -> Ack:
        """Queue the outcome of the server's ``reply`` (and a retry for a 4xx with tries
        left); return the ack the next message's gate waits for."""
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
        ack = Ack()
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
