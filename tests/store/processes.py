"""`python -m mailer ...` as real concurrent processes, for the store's concurrency tests.

:class:`Mailer` starts one with pipes; a thread collects its stderr line by line, so a
test can wait for a progress line ("... 2000 rows") before it lets another process act,
then feed the rest of the standard input and collect the outcome.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

import sqlalchemy as sa

__all__ = ["Mailer", "environment", "wait_until_blocked", "with_application_name"]


class Mailer:
    """A running `mailer` command (cwd and environment: the test's)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailer", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.out = ""

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)
            self.lines.put(line)

    def feed(self, text: str, *, last: bool = False) -> None:
        """Write ``text`` to the standard input (and close it if ``last``)."""
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()
        if last:
            self.process.stdin.close()

    def wait_for(self, wanted: str, timeout: float = 60) -> None:
        """Wait until a line of stderr contains ``wanted``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {wanted!r} on stderr; got {self.err}") from None
            if wanted in line:
                return

    def finish(self, timeout: float = 90) -> int:
        """Close stdin, wait for the end; the exit code (``out``, ``err`` hold the output)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        if self.process.returncode is not None:  # finished already
            return self.process.returncode
        if not self.process.stdin.closed:
            self.process.stdin.close()
        self.out = self.process.stdout.read()
        self.process.stdout.close()
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def with_application_name(url: str, name: str) -> str:
    """A PostgreSQL URL whose connections show as ``name`` in pg_stat_activity."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def wait_until_blocked(url: str, application_name: str, timeout: float = 60) -> None:
    """PostgreSQL: wait until a backend of ``application_name`` waits for a lock."""
    engine = sa.create_engine(url)
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
        "AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.scalar(query, {"name": application_name}):
                    return
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError(f"{application_name} never waited for a lock")


def environment(**changes: str) -> dict[str, str]:
    return {**os.environ, **changes}
