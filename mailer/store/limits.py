"""Rate-limit counters in the database, so every web worker and host shares them.

A counter is one row: a key (``ip:…``, ``to:…`` or ``all``), the end of its current window
and the hits in it. :func:`hit` counts one hit in one statement, an upsert that starts a new
window when the old one has ended (``INSERT … ON CONFLICT DO UPDATE … RETURNING``, on SQLite
3.35+ and PostgreSQL alike); concurrent hits on one key serialise on its row. A window starts
at its first hit, so "1 per 24 h" means 24 hours between two, not one per calendar day.

Keys never hold an address in clear: an email address or client IP is hashed into its key
(:func:`limit_key`); spent counters are deleted by :func:`purge_spent`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Table, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from mailer.store.models import SignupLimit

_LIMITS = cast(Table, SignupLimit.__table__)
GLOBAL_KEY = "all"


def limit_key(kind: str, value: str) -> str:
    """The counter's key for ``value`` (an address or an IP), hashed: ``kind:hex``."""
    digest = hashlib.sha256(f"mailer-limit\0{kind}\0{value}".encode()).hexdigest()[:40]
    return f"{kind}:{digest}"


def client_key(ip: str) -> str:
    """The per-client counter of ``ip``: an IPv6 client counts by its /64 (one subscriber
    line usually has a whole /64, so per-address counting would be no limit at all)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return limit_key("ip", ip or "unknown")
    if address.version == 6:
        return limit_key("ip", str(ipaddress.ip_network(f"{address}/64", strict=False)))
    return limit_key("ip", str(address))


def hit(conn: Connection, key: str, window: timedelta, now: datetime) -> int:
    """Count one hit on ``key``; return the hits in its window, this one included."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(_LIMITS).values(key=key, window_end=now + window, hits=1)
    ended = _LIMITS.c.window_end <= now  # in DO UPDATE: the row as it was before this hit
    upsert = statement.on_conflict_do_update(
        index_elements=[_LIMITS.c.key],
        set_={
            "window_end": case((ended, now + window), else_=_LIMITS.c.window_end),
            "hits": case((ended, 1), else_=_LIMITS.c.hits + 1),
        },
    ).returning(_LIMITS.c.hits)
    hits: int = conn.execute(upsert).scalar_one()
    return hits


def peek(conn: Connection, key: str, now: datetime) -> int:
    """The hits in ``key``'s current window (0 when it has ended), counting none."""
    row = conn.execute(
        select(_LIMITS.c.hits).where(_LIMITS.c.key == key, _LIMITS.c.window_end > now)
    ).first()
    return int(row[0]) if row else 0


def forget_key(conn: Connection, key: str) -> None:
    conn.execute(delete(_LIMITS).where(_LIMITS.c.key == key))


def purge_spent(conn: Connection, now: datetime) -> int:
    """Delete the counters whose window has ended; return how many."""
    result = conn.execute(delete(_LIMITS).where(_LIMITS.c.window_end <= now))
    return int(getattr(result, "rowcount", 0) or 0)
