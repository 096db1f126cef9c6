"""Handing ledger rows to the sender threads: fresh batches, then due retries.

Fresh rows come in small keyset-paginated batches of ``pending`` rows (plus ``deferred``
ones, see :meth:`mailer.send.run.SendOptions.deferred_below`), each read with its
subscriber's current status; 4xx rows wait in an in-memory heap for their backoff and their
subscriber is re-read before the retry. A subscriber no longer active has their row skipped.

With cooperating runs (:class:`~mailer.send.ports.Claims`), a run out of rows while others
still hold some waits and asks again: their holders finish them, or their leases run out
and this run takes them over, so the last run standing finishes the issue.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mailer.send.ports import Ledger, LedgerRow

HELD_POLL = 0.5  # seconds between asks for rows other runs hold (they may finish them)


def batch_size(batch: int, rate: float | None) -> int:
    """Rows read at once: ``batch``, but with a rate only what ~0.2 s of sending takes, so
    the "still subscribed" status read with the batch is mostly fresh (the gate reads it
    once more before each final dot; this spares building and sending a body for nothing)."""
    cap = max(1, int((rate or 1e9) * 0.2))
    return max(1, min(batch, cap))


@dataclass(order=True)
class _Retry:
    due: float
    seq: int
    row: LedgerRow = field(compare=False)
    tries: int = field(compare=False)


class Dispatch:
    """Hands out rows until the ledger has none left to send and no retry is waiting.

    ``skip`` is called (under the dispatch's lock) for each row whose subscriber is no
    longer active; ``keep_tries`` says whether a deferred row from an earlier run starts
    with the tries it already had (a resume) or with none (``--retry``).
    """

    def __init__(
        self,
        ledger: Ledger,
        stop: threading.Event,
        skip: Callable[[LedgerRow], None],
        *,
        deferred_below: int,
        batch_size: int,
        keep_tries: bool,
    ) -> None:
        self._ledger = ledger
        self._stop = stop
        self._skip = skip
        self._deferred_below = deferred_below
        self._batch_size = batch_size
        self._keep_tries = keep_tries
        self._cond = threading.Condition()
        self._buffer: deque[tuple[LedgerRow, int]] = deque()
        self._retries: list[_Retry] = []
        self._seq = itertools.count()
        self._after_id = 0
        self._exhausted = False
        self._next_fill = 0.0  # monotonic: when to ask for rows again (others hold some)
        self._in_flight = 0

    def take(self) -> tuple[LedgerRow, int] | None:
        """The next (row, tries so far this run), or None when the run is over."""
        with self._cond:
            while not self._stop.is_set():
                now = time.monotonic()
                if self._retries and self._retries[0].due <= now:
                    retry = heapq.heappop(self._retries)
                    if retry.row.subscriber_id not in self._ledger.still_active(
                        [retry.row.subscriber_id]
                    ):
                        self._skip(retry.row)
                        continue
                    self._in_flight += 1
                    return retry.row, retry.tries
                if self._buffer:
                    self._in_flight += 1
                    return self._buffer.popleft()
                if not self._exhausted and now >= self._next_fill:
                    self._fill()
                    continue
                if not self._exhausted:  # others hold rows: ask again soon
                    due = self._retries[0].due if self._retries else self._next_fill
                    self._cond.wait(max(0.0, min(due, self._next_fill) - now))
                elif self._retries:
                    self._cond.wait(self._retries[0].due - now)
                elif self._in_flight:
                    self._cond.wait()  # an answer may still schedule a retry
                else:
                    self._cond.notify_all()
                    return None
            return None

    def finished(self, row: LedgerRow, tries: int, retry_in: float | None) -> None:
        """A row taken is done with (``retry_in``: seconds until it is handed out again)."""
        with self._cond:
            self._in_flight -= 1
            if retry_in is not None:
                heapq.heappush(
                    self._retries, _Retry(time.monotonic() + retry_in, next(self._seq), row, tries)
                )
            self._cond.notify_all()

    def wake(self) -> None:
        """Let waiting senders see that the run is stopping."""
        with self._cond:
            self._cond.notify_all()

    def _fill(self) -> None:
        rows = self._ledger.next_rows(
            deferred_below=self._deferred_below, after_id=self._after_id, limit=self._batch_size
        )
        if not rows:
            held = self._ledger.held_elsewhere()
            if held is None:
                self._exhausted = True
            else:
                self._next_fill = time.monotonic() + min(held + 0.05, HELD_POLL)
            return
        self._after_id = rows[-1].delivery_id
        for row in rows:
            if row.active:
                # A resumed deferred row keeps its tries; --retry gives it a fresh budget.
                self._buffer.append((row, row.attempts if self._keep_tries else 0))
            else:
                self._skip(row)
