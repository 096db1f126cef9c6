"""A sign-up's link: what its page shows, and confirming it (double opt-in's second half).

Confirming makes the address an active subscriber (a new one, or a returning one whose
history is kept; a forgotten address becomes a fresh subscriber and its erasure hash goes)
and writes the proof of consent (:mod:`mailer.store.consent`). The link then stays usable
for a short grace (a repeated POST sees the welcome page again), then is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, insert, select, update
from sqlalchemy.exc import DBAPIError

from mailer.errors import DatabaseUnavailable
from mailer.store.addresses import address_hash
from mailer.store.db import Store
from mailer.store.models import (
    Consent,
    ConsentText,
    ForgottenAddress,
    Signup,
    SignupMail,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    utcnow,
)
from mailer.store.signups import CONFIRM_GRACE, SOURCE_SIGNUP, clean_name, writing
from mailer.store.status import StatusChange, change_statuses
from mailer.tokens import new_uid

_SIGNUPS = cast(Table, Signup.__table__)
_OUTBOX = cast(Table, SignupMail.__table__)
_SUBSCRIBERS = cast(Table, Subscriber.__table__)
_EVENTS = cast(Table, SubscriberEvent.__table__)
_REASON = "confirmed sign-up"


@dataclass(frozen=True)
class SignupView:
    """A sign-up as its link's page shows it."""

    email: str
    name: str  # to prefill the page's name field
    consent_text: str
    confirmed: bool  # confirmed already (within the grace): the welcome page


def _live(row: Row[Any] | None, now: datetime) -> bool:
    """Whether a sign-up's link still works: unconfirmed and unexpired, or confirmed within
    the grace."""
    if row is None:
        return False
    if row.confirmed_at is not None:
        return bool(now - row.confirmed_at <= CONFIRM_GRACE)
    return bool(row.expires_at > now)


def signup_view(store: Store, token_hash: str, now: datetime | None = None) -> SignupView | None:
    """What the link with ``token_hash`` shows (None: unknown, expired or used); changes
    nothing."""
    now = now or utcnow()
    query = (
        select(_SIGNUPS, ConsentText.text, _SUBSCRIBERS.c.name.label("known_name"))
        .join(ConsentText, ConsentText.sha256 == _SIGNUPS.c.consent_sha256)
        .outerjoin(_SUBSCRIBERS, _SUBSCRIBERS.c.email_key == _SIGNUPS.c.email_key)
        .where(_SIGNUPS.c.token_hash == token_hash)
    )
    try:
        with store.engine.connect() as conn:
            row = conn.execute(query).first()
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None
    if row is None or not _live(row, now):
        return None
    name = row.name or row.known_name or ""
    return SignupView(row.email, name, row.text, row.confirmed_at is not None)


@dataclass(frozen=True)
class Confirmed:
    email: str
    again: bool  # a repeated POST within the grace: nothing changed


def confirm_signup(
    store: Store, token_hash: str, name: str | None = None, now: datetime | None = None
) -> Confirmed | None:
    """Make the sign-up's address an active subscriber, with its consent record.

    ``name`` is what the confirmation page's field held (None: keep the sign-up's). None when
    the link is unknown, expired, or used longer ago than the grace.
    """
    now = now or utcnow()
    with writing(store) as conn:
        query = select(_SIGNUPS).where(_SIGNUPS.c.token_hash == token_hash)
        row = conn.execute(query.with_for_update()).first()
        if row is None or not _live(row, now):
            return None
        if row.confirmed_at is not None:
            return Confirmed(row.email, again=True)
        subscriber_id = _activate(conn, row, row.name if name is None else name, now)
        conn.execute(
            insert(cast(Table, Consent.__table__)).values(
                subscriber_id=subscriber_id,
                signed_up_at=row.signed_up_at,
                confirmed_at=now,
                form=row.form,
                ip=row.ip,
                consent_sha256=row.consent_sha256,
            )
        )
        conn.execute(update(_SIGNUPS).where(_SIGNUPS.c.id == row.id).values(confirmed_at=now))
        conn.execute(update(_OUTBOX).where(_OUTBOX.c.signup_id == row.id).values(nonce=""))
    return Confirmed(row.email, again=False)


def _activate(conn: Connection, signup: Row[Any], name: str, now: datetime) -> int:
    """The subscriber of ``signup``'s address made active (created if new); its id.

    A new subscriber's history starts with this sign-up ("" -> active); a returning one's
    gains the change back to active, and keeps everything before it.
    """
    found = conn.execute(
        select(_SUBSCRIBERS.c.id, _SUBSCRIBERS.c.status, _SUBSCRIBERS.c.name)
        .where(_SUBSCRIBERS.c.email_key == signup.email_key)
        .with_for_update()
    ).first()
    name = clean_name(name)
    if found is not None:
        if name != found.name:
            conn.execute(
                update(_SUBSCRIBERS)
                .where(_SUBSCRIBERS.c.id == found.id)
                .values(name=name, updated_at=now)
            )
        old = SubscriberStatus(found.status)
        if old != SubscriberStatus.ACTIVE:
            change = StatusChange(found.id, old, SubscriberStatus.ACTIVE, SOURCE_SIGNUP, _REASON)
            change_statuses(conn, [change])
        return int(found.id)
    forgotten = cast(Table, ForgottenAddress.__table__)
    conn.execute(
        delete(forgotten).where(forgotten.c.address_hash == address_hash(signup.email_key))
    )
    subscriber_id: int = conn.execute(
        insert(_SUBSCRIBERS)
        .values(
            uid=new_uid(),
            email=signup.email,
            email_key=signup.email_key,
            name=name,
            status=SubscriberStatus.ACTIVE,
            attributes={},
            created_at=now,
            updated_at=now,
            status_changed_at=now,
            status_source=SOURCE_SIGNUP,
            status_reason=_REASON,
        )
        .returning(_SUBSCRIBERS.c.id)
    ).scalar_one()
    conn.execute(
        insert(_EVENTS).values(
            subscriber_id=subscriber_id,
            at=now,
            old_status="",
            new_status=SubscriberStatus.ACTIVE.value,
            source=SOURCE_SIGNUP,
            reason=_REASON,
            issue_id=None,
        )
    )
    return subscriber_id
