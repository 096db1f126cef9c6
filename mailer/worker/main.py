"""The worker's loop: send what is being sent, run the jobs, until SIGTERM or SIGINT.

A signal sets the stop event: the run in progress stops as Ctrl-C stops `mailer send` (the
messages in flight finish and are recorded, the claims are released), the jobs thread ends
after its current job, and the worker exits 0. When the database goes away the worker logs
one line, retries with a growing pause (up to :data:`MAX_BACKOFF`), and one line when it is
back; an unreachable database at start is the CLI's one error line (the store is opened
before this loop).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from mailer.config import Config
from mailer.errors import DatabaseUnavailable, LeaseLost, MailerError, TransportError
from mailer.store.db import Store
from mailer.worker.jobs import JOBS, Job
from mailer.worker.periodic import Periodic
from mailer.worker.sending import Sending

POLL = 1.0  # seconds between looks for issues to send when there was nothing
MAX_BACKOFF = 30.0

Log = Callable[[str], None]


class Worker:
    def __init__(
        self,
        config: Config,
        store: Store,
        log: Log,
        *,
        jobs: Sequence[Job] | None = None,
        poll: float = POLL,
    ) -> None:
        self.config = config
        self.store = store
        self.log = log
        self.poll = poll
        self.stop = threading.Event()
        self.jobs = list(JOBS if jobs is None else jobs)
        self._outage = False
        self._backoff = poll

    def handle_signals(self) -> None:
        """SIGTERM and SIGINT stop the worker cleanly (main thread only)."""

        def stop(signum: int, frame: FrameType | None) -> None:
            if not self.stop.is_set():
                self.log(f"{signal.Signals(signum).name}: finishing the messages in flight")
            self.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> None:
        periodic = Periodic(self.config, self.store, self.jobs, self.stop, self.log)
        periodic.start()
        sending = Sending(self.config, self.store, self.stop, self.log)
        names = ", ".join(job.name for job in periodic.jobs) or "none"
        self.log(f"worker started on {self.store.url} (jobs: {names})")
        try:
            while not self.stop.is_set():
                pause = self._round(sending)
                self.stop.wait(pause)
        finally:
            self.stop.set()
            periodic.join()
        self.log("worker stopped")

    def _round(self, sending: Sending) -> float:
        """One round of sending; the pause before the next."""
        try:
            with self.store.errors():
                worked = sending.round()
        except KeyboardInterrupt:
            return 0.0  # the stop event ended a run: the loop ends
        except (DatabaseUnavailable, TransportError, LeaseLost, OSError) as exc:
            return self._failed(exc)
        except MailerError as exc:  # e.g. the send stopped: its cause, retried later
            return self._failed(exc)
        if self._outage:
            self.log("sending works again")
            self._outage = False
        self._backoff = self.poll
        return 0.0 if worked else self.poll

    def _failed(self, exc: BaseException) -> float:
        if not self._outage:
            self.log(f"sending failed: {exc} (retrying with backoff; logged again once it works)")
            self._outage = True
        pause = self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        return pause
