"""The sign-up outbox in SQL: the store's adapter for :class:`mailer.send.ports.Outbox`.

Claims are leases: :meth:`SqlOutbox.claim` marks the rows it hands out with a random lease
id and an expiry, in one short transaction (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so
drainers on several hosts take different rows without waiting; SQLite: ``BEGIN IMMEDIATE``,
one claim at a time). Every outcome is written only ``WHERE lease_owner = <that id>``, so a
drainer whose lease ran out (and whose row another drainer took) can change nothing, and the
send checks the lease again right before committing the message to the server
(:meth:`SqlOutbox.holds`). A drainer that dies leaves its rows leased until the lease ends;
then another takes them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, exists, or_, select, update

from mailer.send.ports import OutboxMail, OutboxStatus
from mailer.store import db, limits
from mailer.store.db import Store
from mailer.store.models import Signup, SignupLimit, SignupMail, utcnow
from mailer.store.signups import purge_signups, spent

_OUTBOX = cast(Table, SignupMail.__table__)
_SIGNUPS = cast(Table, Signup.__table__)
_LIMITS = cast(Table, SignupLimit.__table__)


def _due(now: datetime) -> Any:
    return and_(
        _OUTBOX.c.status == OutboxStatus.PENDING,
        _OUTBOX.c.next_attempt_at <= now,
        or_(_OUTBOX.c.lease_until.is_(None), _OUTBOX.c.lease_until <= now),
    )


class SqlOutbox:
    """:class:`~mailer.send.ports.Outbox` in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.store.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {db.LOCK_WAIT_MS:d}")
            yield conn

    def due(self) -> bool:
        with self.store.engine.connect() as conn:
            return conn.scalar(select(exists().where(_due(utcnow())))) is True

    def claim(self, *, limit: int, lease_seconds: float) -> list[OutboxMail]:
        now = utcnow()
        lease = secrets.token_hex(16)
        with self._writing() as conn:
            ids = list(
                conn.scalars(
                    select(_OUTBOX.c.id)
                    .where(_due(now))
                    .order_by(_OUTBOX.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)  # SQLite: BEGIN IMMEDIATE instead
                )
            )
            if not ids:
                return []
            conn.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id.in_(ids))
                .values(lease_owner=lease, lease_until=now + timedelta(seconds=lease_seconds))
            )
            rows = conn.execute(
                select(
                    _OUTBOX.c.id,
                    _OUTBOX.c.nonce,
                    _OUTBOX.c.attempts,
                    _SIGNUPS.c.email,
                    _SIGNUPS.c.expires_at,
                )
                .join(_SIGNUPS, _SIGNUPS.c.id == _OUTBOX.c.signup_id)
                .where(_OUTBOX.c.id.in_(ids))
                .order_by(_OUTBOX.c.id)
            ).all()
        return [
            OutboxMail(
                id=row.id,
                to=row.email,
                nonce=bytes.fromhex(row.nonce),
                attempts=row.attempts,
                expires_at=row.expires_at,
                lease=lease,
            )
            for row in rows
        ]

    def _held(self, mail: OutboxMail) -> Any:
        return and_(
            _OUTBOX.c.id == mail.id,
            _OUTBOX.c.lease_owner == mail.lease,
            _OUTBOX.c.status == OutboxStatus.PENDING,
        )

    def holds(self, mail: OutboxMail, *, lease_seconds: float) -> bool:
        until = utcnow() + timedelta(seconds=lease_seconds)
        with self.store.engine.begin() as conn:
            result = conn.execute(update(_OUTBOX).where(self._held(mail)).values(lease_until=until))
            return bool(getattr(result, "rowcount", 0))

    def _finish(self, mail: OutboxMail, **values: Any) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                update(_OUTBOX)
                .where(self._held(mail))
                .values(attempts=_OUTBOX.c.attempts + 1, lease_owner="", lease_until=None, **values)
            )

    def sent(self, mail: OutboxMail, reply: str, message_id: str) -> None:
        self._finish(
            mail,
            status=OutboxStatus.SENT,
            nonce="",
            last_reply=reply,
            message_id=message_id,
            sent_at=utcnow(),
        )

    def retry(self, mail: OutboxMail, reply: str, at: datetime) -> None:
        self._finish(mail, last_reply=reply, next_attempt_at=at)

    def failed(self, mail: OutboxMail, reply: str) -> None:
        self._finish(mail, status=OutboxStatus.FAILED, nonce="", last_reply=reply)

    def purge(self, now: datetime | None = None) -> int:
        now = now or utcnow()
        with self.store.engine.connect() as conn:  # a read first: most runs find nothing
            anything = conn.scalar(
                select(exists().where(spent(now)) | exists().where(_LIMITS.c.window_end <= now))
            )
        if not anything:
            return 0
        with self._writing() as conn:
            limits.purge_spent(conn, now)
            return purge_signups(conn, now)
