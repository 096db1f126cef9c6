"""Sign-ups with double opt-in: record one, show its link's page, confirm it.

A sign-up is not a subscriber: it lives in ``signups`` (one per address) until its link is
confirmed or it expires, and is never sent an issue. Recording one writes, in ONE
transaction, the sign-up and its confirmation email's outbox row (sent in the background by
:mod:`mailer.send.outbox`), after three rate limits held in the database
(:mod:`mailer.store.limits`), so they hold across web workers and hosts:

* per client (``signup_ip_rate``): past it, nothing is recorded;
* per address: one confirmation email per 24 hours; a repeat records nothing;
* for all (``signup_emails_per_hour``): past it the sign-up is kept *held*, without an
  email, for the operator to re-send (``mailer signups resend``) or let expire.

Each confirmation email carries a fresh random nonce (the link's token is the nonce, signed;
:func:`mailer.tokens.make_signup_token`); the database keeps its hash, and the nonce itself
only in the outbox row until the email is final. A newer email replaces the older link.

Confirming the link is :mod:`mailer.store.signup_links`.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from mailer.config import Config
from mailer.errors import DatabaseUnavailable
from mailer.settings import rate_window
from mailer.store import db, limits
from mailer.store.addresses import MAX_NAME
from mailer.store.db import Store
from mailer.store.models import (
    OutboxStatus,
    Signup,
    SignupMail,
    Subscriber,
    SubscriberEvent,
    utcnow,
)
from mailer.tokens import new_signup_nonce, signup_lookup_hash

SOURCE_SIGNUP = "signup"  # the subscriber's status source after a confirmed sign-up
CONFIRM_GRACE = timedelta(minutes=10)  # a confirmed link still answers (a double click)
PER_ADDRESS = timedelta(hours=24)  # one confirmation email per address per this
_HOUR = timedelta(hours=1)
_SIGNUPS = cast(Table, Signup.__table__)
_OUTBOX = cast(Table, SignupMail.__table__)
_SUBSCRIBERS = cast(Table, Subscriber.__table__)
_EVENTS = cast(Table, SubscriberEvent.__table__)
_REASON = "confirmed sign-up"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class SignupLimits:
    per_client: int
    client_window: timedelta
    per_hour: int
    link_valid: timedelta

    @classmethod
    def from_config(cls, config: Config) -> SignupLimits:
        count, seconds = rate_window(config.signup_ip_rate)
        return cls(
            per_client=count,
            client_window=timedelta(seconds=seconds),
            per_hour=config.signup_emails_per_hour,
            link_valid=timedelta(days=config.signup_link_days),
        )


@dataclass(frozen=True)
class SignupRequest:
    """A sign-up from a person (the bots are filtered before): the normalised address and
    its key, a display name, where the form was, the client and the consent text's hash."""

    email: str
    key: str
    name: str
    form: str
    ip: str
    consent_sha256: str


class Outcome(enum.StrEnum):
    QUEUED = "queued"  # a confirmation email is in the outbox
    HELD = "held"  # kept, not mailed: the hourly cap of confirmation emails is reached
    ADDRESS_LIMITED = "address-limited"  # this address was sent one in the last 24 hours
    CLIENT_LIMITED = "client-limited"  # this client signed up too often: nothing recorded


@dataclass(frozen=True)
class Recorded:
    outcome: Outcome
    cap_reached_now: bool = False  # this sign-up was the first over the cap in its hour


def clean_name(raw: str) -> str:
    """A name from a form: control characters (CR, LF, ...) as spaces, at most 200 chars."""
    return " ".join(_CONTROL.sub(" ", raw).split())[:MAX_NAME]


@contextmanager
def writing(store: Store) -> Iterator[Connection]:
    """A write transaction that holds the write lock before it reads (see unsubscribe.py)."""
    try:
        with store.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {db.LOCK_WAIT_MS:d}")
            yield conn
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None


_FIELDS = ("email", "name", "signed_up_at", "form", "ip", "consent_sha256")
_LINK = ("token_hash", "expires_at", "mailed_at", "confirmed_at")


@dataclass(frozen=True)
class _Sql:
    """The sign-up's statements for one dialect, built once (it is the form's hot path)."""

    queue: Any  # upsert the sign-up with a new link, returning its id
    hold: Any  # insert a sign-up without a link, unless the address has one
    mail: Any  # upsert its email in the outbox (replacing one not sent yet)


@functools.cache
def _sql(dialect: str) -> _Sql:
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values: dict[str, Any] = {name: bindparam(name) for name in ("email_key", *_FIELDS, *_LINK)}
    new = insert_(_SIGNUPS).values(values)
    queue = new.on_conflict_do_update(
        index_elements=[_SIGNUPS.c.email_key],
        set_={name: new.excluded[name] for name in (*_FIELDS, *_LINK)},
    ).returning(_SIGNUPS.c.id)
    hold = (
        insert_(_SIGNUPS)
        .values(values)
        .on_conflict_do_nothing(index_elements=[_SIGNUPS.c.email_key])
    )
    columns = [c.name for c in _OUTBOX.c if c.name not in ("id", "signup_id")]
    email = insert_(_OUTBOX).values({c: bindparam(c) for c in ("signup_id", *columns)})
    mail = email.on_conflict_do_update(
        index_elements=[_OUTBOX.c.signup_id],
        index_where=text("status = 'pending'"),  # uq_signup_outbox_pending's predicate
        set_={c: email.excluded[c] for c in columns},
    )
    return _Sql(queue, hold, mail)


def record_signup(
    store: Store, request: SignupRequest, rules: SignupLimits, now: datetime | None = None
) -> Recorded:
    """Record a sign-up and queue its confirmation email, within the limits (module doc)."""
    return record_signups(store, [request], rules, now)[0]


def record_signups(
    store: Store,
    requests: Sequence[SignupRequest],
    rules: SignupLimits,
    now: datetime | None = None,
) -> list[Recorded]:
    """:func:`record_signup` for many in ONE transaction, in order (the web app's group
    commit: the sign-ups that arrive while one transaction runs go in the next)."""
    now = now or utcnow()
    with writing(store) as conn:
        return [_record(conn, request, rules, now) for request in requests]


def _record(
    conn: Connection, request: SignupRequest, rules: SignupLimits, now: datetime
) -> Recorded:
    sql = _sql(conn.dialect.name)
    client, to_key = limits.client_key(request.ip), limits.limit_key("to", request.key)
    windows = [(client, rules.client_window), (to_key, PER_ADDRESS), (limits.GLOBAL_KEY, _HOUR)]
    hits = limits.hit_three(conn, windows, now)  # one statement; a refusal takes hits back
    if hits[client] > rules.per_client:
        limits.unhit(conn, [to_key, limits.GLOBAL_KEY])
        return Recorded(Outcome.CLIENT_LIMITED)
    if hits[to_key] > 1:
        limits.unhit(conn, [limits.GLOBAL_KEY])
        return Recorded(Outcome.ADDRESS_LIMITED)
    total = hits[limits.GLOBAL_KEY]
    row = {
        "email_key": request.key,
        "email": request.email,
        "name": request.name,
        "signed_up_at": now,
        "form": request.form,
        "ip": request.ip,
        "consent_sha256": request.consent_sha256,
        "expires_at": now + rules.link_valid,
        "confirmed_at": None,
    }
    if total > rules.per_hour:
        limits.unhit(conn, [to_key])  # no email went: the address's day is not spent
        conn.execute(sql.hold, {**row, "token_hash": None, "mailed_at": None})
        return Recorded(Outcome.HELD, cap_reached_now=total == rules.per_hour + 1)
    nonce = new_signup_nonce()
    link = {"token_hash": signup_lookup_hash(nonce), "mailed_at": now}
    signup_id: int = conn.execute(sql.queue, {**row, **link}).scalar_one()
    _mail(conn, signup_id, nonce, now)
    return Recorded(Outcome.QUEUED)


def _mail(conn: Connection, signup_id: int, nonce: bytes, now: datetime) -> None:
    """Put the sign-up's email in the outbox, replacing one not sent yet."""
    email = {
        "signup_id": signup_id,
        "nonce": nonce.hex(),
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_owner": "",
        "last_reply": "",
        "message_id": "",
        "created_at": now,
        "lease_until": None,
        "sent_at": None,
    }
    conn.execute(_sql(conn.dialect.name).mail, email)


def resend_held(store: Store, rules: SignupLimits, now: datetime | None = None) -> int:
    """Queue the confirmation email of every held sign-up not expired (the operator's call:
    past the hourly cap; still one email per address per 24 hours). Return how many."""
    now = now or utcnow()
    queued = 0
    with writing(store) as conn:
        held = conn.execute(
            select(_SIGNUPS.c.id, _SIGNUPS.c.email_key).where(
                _SIGNUPS.c.token_hash.is_(None),
                _SIGNUPS.c.confirmed_at.is_(None),
                _SIGNUPS.c.expires_at > now,
            )
        ).all()
        for signup_id, key in held:
            if limits.hit(conn, limits.limit_key("to", key), PER_ADDRESS, now) > 1:
                continue
            nonce = new_signup_nonce()
            conn.execute(
                update(_SIGNUPS)
                .where(_SIGNUPS.c.id == signup_id)
                .values(
                    token_hash=signup_lookup_hash(nonce),
                    mailed_at=now,
                    expires_at=now + rules.link_valid,
                )
            )
            _mail(conn, signup_id, nonce, now)
            queued += 1
    return queued


# --- for the operator ---------------------------------------------------------------------


@dataclass(frozen=True)
class PendingSignup:
    email: str
    state: str  # "held" (no email: the hourly cap), "mailing", "sent", "failed"
    signed_up_at: datetime
    expires_at: datetime
    last_reply: str  # the mail server's last answer about its email


def pending_signups(store: Store) -> list[PendingSignup]:
    """The sign-ups not confirmed yet, oldest first, with their email's state."""
    latest = (
        select(_OUTBOX.c.signup_id, _OUTBOX.c.status, _OUTBOX.c.last_reply)
        .where(_OUTBOX.c.id.in_(select(func.max(_OUTBOX.c.id)).group_by(_OUTBOX.c.signup_id)))
        .subquery()
    )
    query = (
        select(_SIGNUPS, latest.c.status.label("mail"), latest.c.last_reply)
        .outerjoin(latest, latest.c.signup_id == _SIGNUPS.c.id)
        .where(_SIGNUPS.c.confirmed_at.is_(None))
        .order_by(_SIGNUPS.c.id)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    states = {None: "held", "pending": "mailing", "sent": "sent", "failed": "failed"}
    return [
        PendingSignup(
            row.email,
            "held" if row.token_hash is None else states.get(row.mail, "mailing"),
            row.signed_up_at,
            row.expires_at,
            row.last_reply or "",
        )
        for row in rows
    ]


# --- upkeep --------------------------------------------------------------------------------


def spent(now: datetime) -> ColumnElement[bool]:
    """The sign-ups whose link no longer works: expired, or confirmed before the grace."""
    return or_(
        _SIGNUPS.c.confirmed_at <= now - CONFIRM_GRACE,
        _SIGNUPS.c.confirmed_at.is_(None) & (_SIGNUPS.c.expires_at <= now),
    )


def purge_signups(conn: Connection, now: datetime) -> int:
    """Delete the spent sign-ups (their outbox rows go with them); return how many."""
    result = conn.execute(delete(_SIGNUPS).where(spent(now)))
    return int(getattr(result, "rowcount", 0) or 0)


def forget_signups(conn: Connection, email_key: str) -> None:
    """Erase an address's sign-up and its per-address counter (GDPR ``forget``)."""
    conn.execute(delete(_SIGNUPS).where(_SIGNUPS.c.email_key == email_key))
    limits.forget_key(conn, limits.limit_key("to", email_key))
