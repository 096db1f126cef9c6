"""Pacing a send run at ``--rate``: evenly spaced slots shared by every sender thread."""

from __future__ import annotations

import threading
import time


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
