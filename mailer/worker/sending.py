"""The worker's sending: one round over the issues being sent.

On PostgreSQL it joins each issue with rows to claim (:class:`~mailer.store.claims.
SqlClaims`), sending with every other worker and `mailer send` of it until no row is left to
claim. On SQLite, one run at a time: it resumes an issue under the send lock, and leaves an
issue alone while another run holds it. Either way it sends the composed issue stored when
the send started, never an issue folder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from mailer.config import Config, parse_rate
from mailer.errors import IssueBusy
from mailer.send.ports import Joined
from mailer.send.run import Progress, SendOptions
from mailer.send.service import SendService, Summary
from mailer.send.stored import composed_of
from mailer.store.claims import SqlClaims, cooperating
from mailer.store.composed import issues_to_send, stored_issue
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues, SqlSubscriberLookup
from mailer.store.media import SqlMedia
from mailer.store.send_lock import send_lock

Log = Callable[[str], None]


class Sending:
    """Sends every issue being sent, one after the other; ``stop`` ends a run as Ctrl-C
    does (the messages in flight finish, the claims are released)."""

    def __init__(self, config: Config, store: Store, stop: threading.Event, log: Log) -> None:
        self.config = config
        self.store = store
        self.stop = stop
        self.log = log
        self.options = SendOptions(connections=config.connections, rate=parse_rate(config.rate))
        # Workers send stored versions, whose images their starter kept; the media store is
        # wired all the same, so a send handed a composed issue can never skip them.
        self.service = SendService(
            SqlIssues(store), SqlSubscriberLookup(store), config, media=SqlMedia(store)
        )
        self.claims = SqlClaims(store, config.send_lease_seconds) if cooperating(store) else None

    def round(self) -> int:
        """Send what is to send now; how many issues were worked on."""
        below = self.options.deferred_below()
        if self.claims is not None:
            slugs = self.claims.sending(below)
        else:
            slugs = issues_to_send(self.store, below)
        worked = 0
        for slug in slugs:
            if self.stop.is_set():
                break
            summary = self._send(slug)
            if summary is not None:
                worked += 1
                self._report(summary)
        return worked

    def _stopping(self, progress: Progress) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt  # the run's own clean stop (see OnProgress)

    def _send(self, slug: str) -> Summary | None:
        if self.claims is not None:
            return self.service.join(
                self.claims,
                slug,
                self.options,
                on_progress=self._stopping,
                on_join=self._joined,
                on_lost=lambda exc: self.log(f"issue {slug}: {exc}; claiming again"),
            )
        stored = stored_issue(self.store, slug)
        if stored is None:
            return None
        try:
            with send_lock(self.store, slug) as lease:
                self.log(f"resuming issue {slug}")
                issue = composed_of(stored)
                # the issue's own rate (`mailer send --at ... --rate`) wins over the config's
                options = replace(self.options, rate=stored.rate) if stored.rate else self.options
                return self.service.send(issue, options, on_progress=self._stopping, lease=lease)
        except IssueBusy:
            return None  # another run has it: nothing to do here

    def _joined(self, joined: Joined) -> None:
        others = f" with {joined.others} other sender(s)" if joined.others else ""
        self.log(f"sending issue {joined.record.slug}{others}")

    def _report(self, summary: Summary) -> None:
        p = summary.progress
        state = "the issue is sent" if summary.finished else "rows remain (deferred or held)"
        self.log(
            f"issue {summary.slug}: {p.sent} sent, {p.failed} failed, {p.deferred} deferred, "
            f"{p.skipped} skipped by this worker in {p.elapsed:.1f} s; {state}"
        )
