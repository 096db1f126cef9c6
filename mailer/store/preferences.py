"""What a preferences link (in every issue's footer) may show and change: the name.

The web app calls these with the subscriber uid from a verified preferences token; leaving
the list goes through the unsubscribe link's own code (:mod:`mailer.store.unsubscribe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, select, update
from sqlalchemy.exc import DBAPIError

from mailer.errors import DatabaseUnavailable
from mailer.store.db import Store
from mailer.store.models import Subscriber, SubscriberStatus, utcnow
from mailer.store.signups import clean_name

_SUBSCRIBERS = cast(Table, Subscriber.__table__)
_PROFILE = select(_SUBSCRIBERS.c.email, _SUBSCRIBERS.c.name, _SUBSCRIBERS.c.status)


@dataclass(frozen=True)
class Profile:
    email: str
    name: str
    status: SubscriberStatus


def profile(store: Store, uid: str) -> Profile | None:
    """The subscriber with ``uid`` (None if unknown or forgotten); changes nothing."""
    try:
        with store.engine.connect() as conn:
            row = conn.execute(_PROFILE.where(_SUBSCRIBERS.c.uid == uid)).first()
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None
    return None if row is None else Profile(row.email, row.name, SubscriberStatus(row.status))


def rename(store: Store, uid: str, name: str) -> Profile | None:
    """Set the subscriber's display name (cleaned: one line, at most 200 characters)."""
    try:
        with store.engine.begin() as conn:
            conn.execute(
                update(_SUBSCRIBERS)
                .where(_SUBSCRIBERS.c.uid == uid)
                .values(name=clean_name(name), updated_at=utcnow())
            )
            row = conn.execute(_PROFILE.where(_SUBSCRIBERS.c.uid == uid)).first()
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None
    return None if row is None else Profile(row.email, row.name, SubscriberStatus(row.status))
