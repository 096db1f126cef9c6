"""Pacing a send run at ``--rate``: evenly spaced slots shared by every sender thread, and
by every run of the issue when several cooperate (:class:`SharedRateLimiter`)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

from mailer.send.ports import RateSlots


class Pacer(Protocol):
    def wait(self, stop: threading.Event) -> None:
        """Block until this caller's slot (or until ``stop`` is set)."""
        ...


class RateLimiter:
    """Evenly spaced send slots at ``per_second`` (no burst credit, so never above it)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        """Block until this caller's slot (or until ``stop`` is set)."""
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self._interval
        delay = slot - time.monotonic()
        if delay > 0:
            stop.wait(delay)


class SharedRateLimiter:
    """Slots of the issue's rate reserved in the database (:class:`RateSlots`), several at a
    time (about a quarter of a second's worth, at most 100) so a fast rate costs few round
    trips; a slot reserved and not used (the run ends) is a gap, never an excess."""

    def __init__(self, slots: RateSlots, per_second: float) -> None:
        self._slots = slots
        self._interval = 1.0 / per_second
        self._batch = max(1, min(100, int(per_second / 4)))
        self._due: deque[float] = deque()  # monotonic times of the slots reserved
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        with self._lock:  # reserving holds the others: they would wait for slots anyway
            if not self._due:
                first = time.monotonic() + self._slots.reserve(self._batch)
                self._due.extend(first + i * self._interval for i in range(self._batch))
            slot = self._due.popleft()
        delay = slot - time.monotonic()
        if delay > 0:
            stop.wait(delay)
