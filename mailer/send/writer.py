"""The ledger writer of a send run: group commit, then acknowledge.

One thread owns every ledger write. Senders queue their outcomes; the writer writes all
that are waiting in ONE short transaction and only then acknowledges each of them. A sender
waits for the acknowledgement of its previous outcome right before it commits its next
message to the server: that wait is what the crash-safety argument in
:mod:`mailer.send.run` rests on.
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


class Writer(threading.Thread):
    """Writes queued outcomes with ``record`` (which commits before it returns), then tells
    ``recorded`` about them and sets their acks. The first exception goes to ``failed`` and
    stays in :attr:`error`; nothing is written after it."""

    def __init__(
        self,
        record: Callable[[Sequence[DeliveryResult]], None],
        recorded: Callable[[Sequence[DeliveryResult]], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        super().__init__(name="ledger-writer", daemon=True)
        self._record = record
        self._recorded = recorded
        self._failed = failed
        self._queue: queue.SimpleQueue[tuple[DeliveryResult, Ack | None] | None] = (
            queue.SimpleQueue()
        )
        self.error: BaseException | None = None

    def put(self, result: DeliveryResult, ack: Ack | None = None) -> None:
        self._queue.put((result, ack))

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
                    results = [result for result, _ in group]
                    self._record(results)
                    self._recorded(results)
                except BaseException as exc:
                    self.error = exc
                    self._failed(exc)
            # After a failure, keep releasing senders (they see writer.error at their gate
            # and send nothing more) until the run closes the queue.
            for _, ack in group:
                if ack is not None:
                    ack.set()

    def _next_group(self) -> tuple[list[tuple[DeliveryResult, Ack | None]], bool]:
        """Everything queued now (waiting for at least one item), and whether the queue is
        closed."""
        item = self._queue.get()
        group: list[tuple[DeliveryResult, Ack | None]] = []
        while item is not None:
            group.append(item)
            if len(group) >= GROUP_LIMIT:
                return group, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return group, False
        return group, True
