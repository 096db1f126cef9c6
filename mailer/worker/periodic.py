"""Running the periodic jobs (:mod:`mailer.worker.jobs`) in a thread beside the sending.

One job at a time, each about every ``interval_seconds`` (counted from the end of its last
run, so a slow job never piles up). A failing job is one log line, and the same failure
again is not logged again until the job has succeeded once (a mailbox or database that is
down for an hour is two lines, not 3600); it is retried at its interval, doubled while it
keeps failing (up to ten times the interval, at most five minutes more).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from mailer.config import Config
from mailer.errors import MailerError
from mailer.store.db import Store
from mailer.worker.jobs import Job

Log = Callable[[str], None]


class Periodic(threading.Thread):
    def __init__(
        self, config: Config, store: Store, jobs: Sequence[Job], stop: threading.Event, log: Log
    ) -> None:
        super().__init__(name="worker-jobs", daemon=True)
        self.config = config
        self.store = store
        self.jobs = [job for job in jobs if job.enabled(config)]
        self.stopping = stop
        self.log = log
        self._due = dict.fromkeys((job.name for job in self.jobs), 0.0)
        self._failing: dict[str, int] = {}  # job name -> consecutive failures

    def run(self) -> None:
        while not self.stopping.is_set():
            now = time.monotonic()
            for job in self.jobs:
                if self.stopping.is_set():
                    return
                if self._due[job.name] <= now:
                    self._run(job)
            soonest = min(self._due.values(), default=now + 1.0)
            self.stopping.wait(max(0.05, soonest - time.monotonic()))

    def _run(self, job: Job) -> None:
        try:
            with self.store.errors():
                job.run_once(self.config, self.store)
        except Exception as exc:  # one job's fault (even a bug) must not stop the others
            if not isinstance(exc, MailerError | OSError):
                exc = MailerError(f"{type(exc).__name__}: {exc}")
            failures = self._failing.get(job.name, 0) + 1
            self._failing[job.name] = failures
            if failures == 1:
                self.log(f"job {job.name} failed: {exc} (retrying; logged again once it works)")
            backoff = min(job.interval_seconds * 2 ** (failures - 1), job.interval_seconds * 10)
            self._due[job.name] = time.monotonic() + min(backoff, job.interval_seconds + 300)
            return
        if self._failing.pop(job.name, 0):
            self.log(f"job {job.name} works again")
        self._due[job.name] = time.monotonic() + job.interval_seconds
