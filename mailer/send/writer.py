"""The ledger writer of a send run: group commit, then acknowledge.

One thread owns every ledger write. Senders queue their outcomes; the writer writes all
that are waiting in ONE short transaction and only then acknowledges each of them. A sender
waits for the acknowledgement of its previous outcome right before it commits its next
message to the server: that wait is what the crash-safety argument in
:mod:`mailer.send.run` rests on.

Right before that moment a sender also queues a :class:`Check` of its recipient's status.
The writer answers the checks of a group in the same transaction, read after the group's
writes (so after every earlier outcome is committed, and after the check was asked): one
round trip tells the sender both that its previous outcome is durable and whether its
recipient is still subscribed now, and many senders' checks cost one query.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

from mailer.send.ports import DeliveryResult

GROUP_LIMIT = 1000  # outcomes written in one transaction at most


class Ack:
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


class Check(Ack):
    """Is ``subscriber_id`` active? Set by the writer with the answer in :attr:`active`
    (False if the writer failed: nothing is sent then anyway)."""

    __slots__ = ("active", "subscriber_id")

    def __init__(self, subscriber_id: int) -> None:
        super().__init__()
        self.subscriber_id = subscriber_id
        self.active = False


# Writes ``results`` and reads which of the subscriber ids are active, in one transaction
# committed before it returns (Ledger.record).
Record = Callable[[Sequence[DeliveryResult], Sequence[int]], set[int]]


class Writer(threading.Thread):
    """Writes queued outcomes and answers queued checks with ``record`` (which commits before
    it returns), then tells ``recorded`` about the outcomes and sets the acks. The first
    exception goes to ``failed`` and stays in :attr:`error`; nothing is written after it."""

    def __init__(
        self,
        record: Record,
        recorded: Callable[[Sequence[DeliveryResult]], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        super().__init__(name="ledger-writer", daemon=True)
        self._record = record
        self._recorded = recorded
        self._failed = failed
        self._queue: queue.SimpleQueue[tuple[DeliveryResult | None, Ack | None] | None] = (
            queue.SimpleQueue()
        )
        self.error: BaseException | None = None

    def put(self, result: DeliveryResult, ack: Ack | None = None) -> None:
        self._queue.put((result, ack))

    def check(self, check: Check) -> None:
        """Answer ``check`` after every outcome queued before it is committed."""
        self._queue.put((None, check))

    def close(self) -> None:
        """Write what is queued, then stop the thread and wait for it."""
        self._queue.put(None)
        self.join()

    def run(self) -> None:
        closing = False
        while not closing:
            group, closing = self._next_group()
            if not group:
                continue
            if self.error is None:
                try:
                    results = [result for result, _ in group if result is not None]
                    checks = [c for r, c in group if r is None and isinstance(c, Check)]
                    active = self._record(results, [c.subscriber_id for c in checks])
                    for check in checks:
                        check.active = check.subscriber_id in active
                    self._recorded(results)
                except BaseException as exc:
                    self.error = exc
                    self._failed(exc)
            # After a failure, keep releasing senders (they see writer.error at their gate
            # and send nothing more) until the run closes the queue.
            for _, ack in group:
                if ack is not None:
                    ack.set()

    def _next_group(self) -> tuple[list[tuple[DeliveryResult | None, Ack | None]], bool]:
        """Everything queued now (waiting for at least one item), and whether the queue is
        closed."""
        item = self._queue.get()
        group: list[tuple[DeliveryResult | None, Ack | None]] = []
        while item is not None:
            group.append(item)
            if len(group) >= GROUP_LIMIT:
                return group, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return group, False
        return group, True
