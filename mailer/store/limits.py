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

import functools
import hashlib
import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, case, delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from mailer.store.models import SignupLimit, UTCDateTime

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


@functools.cache
def _hit(dialect: str) -> Any:
    """The upsert of :func:`hit` for ``dialect``, built once (the sign-up's hot path)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now, fresh_end = bindparam("now", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime())
    statement = insert(_LIMITS).values(key=bindparam("key"), window_end=fresh_end, hits=1)
    ended = _LIMITS.c.window_end <= now  # in DO UPDATE: the row as it was before this hit
    return statement.on_conflict_do_update(
        index_elements=[_LIMITS.c.key],
        set_={
            "window_end": case((ended, fresh_end), else_=_LIMITS.c.window_end),
            "hits": case((ended, 1), else_=_LIMITS.c.hits + 1),
        },
    ).returning(_LIMITS.c.hits)


def hit(conn: Connection, key: str, window: timedelta, now: datetime) -> int:
    """Count one hit on ``key``; return the hits in its window, this one included."""
    params = {"key": key, "now": now, "end": now + window}
    hits: int = conn.execute(_hit(conn.dialect.name), params).scalar_one()
    return hits


# Three rows in one upsert, written out: SQLAlchemy compiles a multi-row VALUES statement anew
# for every execution (its cache skips them), which cost more than the statement itself. The
# same text is valid on SQLite and PostgreSQL; in DO UPDATE the bare table name is the row as
# it was, ``excluded`` the row proposed.
_HIT_THREE = text(
    "INSERT INTO signup_limits (key, window_end, hits) "
    "VALUES (:key0, :end0, 1), (:key1, :end1, 1), (:key2, :end2, 1) "
    "ON CONFLICT (key) DO UPDATE SET "
    "window_end = CASE WHEN signup_limits.window_end <= :now THEN excluded.window_end "
    "ELSE signup_limits.window_end END, "
    "hits = CASE WHEN signup_limits.window_end <= :now THEN 1 ELSE signup_limits.hits + 1 END "
    "RETURNING key, hits"
).bindparams(*(bindparam(name, type_=UTCDateTime()) for name in ("end0", "end1", "end2", "now")))


def hit_three(
    conn: Connection, windows: Sequence[tuple[str, timedelta]], now: datetime
) -> dict[str, int]:
    """:func:`hit` on three distinct keys at once: ``{key: hits}``."""
    params: dict[str, Any] = {"now": now}
    for n, (key, window) in enumerate(windows):
        params[f"key{n}"], params[f"end{n}"] = key, now + window
    return {key: hits for key, hits in conn.execute(_HIT_THREE, params)}


_UNHIT = (
    update(_LIMITS)
    .where(_LIMITS.c.key.in_(bindparam("keys", expanding=True)))
    .values(hits=_LIMITS.c.hits - 1)
)


def unhit(conn: Connection, keys: Sequence[str]) -> None:
    """Take back one hit on each of ``keys`` (counted by :func:`hit_three` in vain)."""
    if keys:
        conn.execute(_UNHIT, {"keys": list(keys)})


def peek(conn: Connection, key: str, now: datetime) -> int:
    """The hits in ``key``'s current window (0 when it has ended), counting none."""
    row = conn.execute(
        select(_LIMITS.c.hits).where(_LIMITS.c.key == key, _LIMITS.c.window_end > now)
    ).first()
    return int(row[0]) if row else 0


_FORGET = delete(_LIMITS).where(_LIMITS.c.key == bindparam("key"))


def forget_key(conn: Connection, key: str) -> None:
    conn.execute(_FORGET, {"key": key})


def purge_spent(conn: Connection, now: datetime) -> int:
    """Delete the counters whose window has ended; return how many."""
    result = conn.execute(delete(_LIMITS).where(_LIMITS.c.window_end <= now))
    return int(getattr(result, "rowcount", 0) or 0)
