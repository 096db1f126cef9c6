"""An issue's ``--rate`` shared by all its runs: send slots reserved in the database.

The issue row keeps the next free slot (``rate_next``, seconds of the database's clock, so
hosts whose clocks differ agree). A run reserves several consecutive slots in one atomic
UPDATE (``GREATEST(rate_next, now) + count / rate``) and waits for each in turn: the slots
of all runs never overlap, so the whole issue stays at its rate whatever the number of
runs, at one round trip per batch of slots.
"""

from __future__ import annotations

from sqlalchemy import text

from mailer.store.db import Store

_RESERVE = text("""
WITH clock AS (SELECT EXTRACT(EPOCH FROM clock_timestamp()) AS now)
UPDATE issues SET rate_next = GREATEST(COALESCE(issues.rate_next, 0), clock.now) + :span
FROM clock WHERE issues.id = :issue
RETURNING issues.rate_next - :span - clock.now
""")


class SqlRateSlots:
    """:class:`~mailer.send.ports.RateSlots` of issue ``issue_id`` at ``per_second``."""

    def __init__(self, store: Store, issue_id: int, per_second: float) -> None:
        self.store = store
        self.issue_id = issue_id
        self.per_second = per_second

    def reserve(self, count: int) -> float:
        with self.store.session() as session, session.begin():
            wait = session.scalar(
                _RESERVE, {"issue": self.issue_id, "span": count / self.per_second}
            )
        return float(wait or 0.0)
