"""Subscriber operations for editors: add, remove, show, list, count, status changes, forget.

Bulk import and export live in :mod:`mailer.store.csv_import` and
:mod:`mailer.store.csv_export`. Every status change goes through
:func:`mailer.store.status.change_status`, which keeps the history.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailer.errors import InvalidAttribute, NotFound, StoreError
from mailer.store.addresses import (
    address_hash,
    control_character,
    normalise_address,
    normalise_name,
)
from mailer.store.csv_cells import MARKER
from mailer.store.db import Store
from mailer.store.models import ForgottenAddress, Subscriber, SubscriberStatus, utcnow
from mailer.store.signups import forget_signups
from mailer.store.status import change_status
from mailer.tokens import new_uid

# CSV columns that map to subscriber fields; any other column is an attribute.
FIELD_COLUMNS = (
    "uid",
    "email",
    "name",
    "status",
    "created_at",
    "updated_at",
    "status_changed_at",
    "status_source",
    "status_reason",
)


def check_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as stored: keys non-empty, single-line, without control characters, not a
    field name; text values without control characters but tab and line breaks (else
    InvalidAttribute)."""
    clean: dict[str, Any] = {}
    for key, value in attributes.items():
        name = key.strip()
        if not name or any(c in name for c in "\r\n\0"):
            raise InvalidAttribute(f"attribute {key!r}: names must be non-empty, single-line")
        control = control_character(name)
        if control:
            raise InvalidAttribute(
                f"attribute {key!r}: the name contains a control character ({control})"
            )
        if name.lower() in FIELD_COLUMNS:
            raise InvalidAttribute(f"attribute {name!r}: is a subscriber field, not an attribute")
        if name.lower() == MARKER:
            raise InvalidAttribute(
                f"attribute {name!r}: is a column of the export, not an attribute"
            )
        control = control_character(value, lines=True) if isinstance(value, str) else None
        if control:
            raise InvalidAttribute(f"attribute {name!r}: contains a control character ({control})")
        clean[name] = value
    return clean


def find_by_email(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address (any case), or None. InvalidAddress if malformed."""
    key = normalise_address(email).key
    return session.scalars(select(Subscriber).where(Subscriber.email_key == key)).one_or_none()


def find_by_uid(session: Session, uid: str) -> Subscriber | None:
    """The subscriber with this opaque uid (from a token), or None."""
    return session.scalars(select(Subscriber).where(Subscriber.uid == uid)).one_or_none()


def _get(session: Session, email: str) -> Subscriber:
    subscriber = find_by_email(session, email)
    if subscriber is None:
        raise NotFound(f"{email.strip()}: not on the list")
    return subscriber


def add_subscriber(
    store: Store,
    email: str,
    *,
    name: str = "",
    attributes: Mapping[str, Any] | None = None,
    source: str = "cli",
    force: bool = False,
) -> Subscriber:
    """Add an active subscriber.

    Refuses an address already on the list (whatever its status: use resubscribe) and one
    that was forgotten, unless ``force`` (the person asked to be added back): then the
    forgotten hash is removed.
    """
    address = normalise_address(email)
    clean_name = normalise_name(name)
    attrs = check_attributes(attributes or {})
    with store.session() as session, session.begin():
        existing = find_by_email(session, address.email)
        if existing is not None:
            hint = "" if existing.status == SubscriberStatus.ACTIVE else "; use resubscribe"
            raise StoreError(
                f"{existing.email}: already on the list (status {existing.status}){hint}"
            )
        forgotten = session.get(ForgottenAddress, address_hash(address.key))
        if forgotten is not None:
            if not force:
                raise StoreError(
                    f"{address.email}: was forgotten (erased on request) on "
                    f"{forgotten.forgotten_at:%Y-%m-%d}; add it with --force only if the "
                    "person asked to subscribe again"
                )
            session.delete(forgotten)
        now = utcnow()
        subscriber = Subscriber(
            uid=new_uid(),
            email=address.email,
            email_key=address.key,
            name=clean_name,
            status=SubscriberStatus.ACTIVE,
            attributes=attrs,
            created_at=now,
            updated_at=now,
            status_changed_at=now,
            status_source=source,
            status_reason="added",
        )
        session.add(subscriber)
    return subscriber


def remove_subscriber(store: Store, email: str, *, force: bool = False) -> Subscriber:
    """Delete a subscriber with their history and deliveries.

    An unsubscribed, bounced or complained address is kept unless ``force``: deleting it
    would let a later import add it back as active (``forget`` blocks that instead).
    """
    with store.session() as session, session.begin():
        subscriber = _get(session, email)
        if subscriber.status != SubscriberStatus.ACTIVE and not force:
            raise StoreError(
                f"{subscriber.email}: is {subscriber.status}; removing would let a later "
                "import add it back. Use `forget` to erase it and block re-imports, or "
                "--force"
            )
        session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
    return subscriber


def get_subscriber(store: Store, email: str) -> Subscriber:
    """The subscriber with this address, with their status history loaded."""
    with store.session() as session:
        subscriber = _get(session, email)
        _ = list(subscriber.events)  # load before the session closes
        return subscriber


def list_subscribers(
    store: Store, status: SubscriberStatus | None = None, *, batch: int = 2000
) -> Iterator[Subscriber]:
    """Every subscriber (or those with ``status``), oldest first, streamed in batches."""
    query = select(Subscriber).order_by(Subscriber.id)
    if status is not None:
        query = query.where(Subscriber.status == status)
    with store.session() as session:
        result = session.scalars(query.execution_options(yield_per=batch))
        yield from result


def count_by_status(store: Store) -> dict[SubscriberStatus, int]:
    """Number of subscribers per status (every status present, zero if none)."""
    counts = dict.fromkeys(SubscriberStatus, 0)
    with store.session() as session:
        query = select(Subscriber.status, func.count()).group_by(Subscriber.status)
        for status, n in session.execute(query):
            counts[status] = n
    return counts


def set_status(
    store: Store,
    email: str,
    status: SubscriberStatus,
    *,
    source: str = "cli",
    reason: str = "",
) -> tuple[Subscriber, bool]:
    """Change one subscriber's status (logged); return it and whether anything changed."""
    with store.session() as session, session.begin():
        subscriber = _get(session, email)
        changed = change_status(session, subscriber, status, source=source, reason=reason)
    return subscriber, changed


@dataclass(frozen=True)
class Forgotten:
    email: str
    was_subscribed: bool


def forget(store: Store, email: str) -> Forgotten:
    """Erase everything about an address (GDPR), keeping a one-way hash to block re-imports.

    The subscriber row goes with its status history, consent records and delivery ledger
    rows (ON DELETE CASCADE), and so does a pending sign-up of the address. Works (and is
    idempotent) for an address not on the list, so a request can be recorded before an
    import that would contain it.
    """
    address = normalise_address(email)
    digest = address_hash(address.key)
    with store.session() as session, session.begin():
        result = session.execute(delete(Subscriber).where(Subscriber.email_key == address.key))
        forget_signups(session.connection(), address.key)  # a pending sign-up goes too
        if session.get(ForgottenAddress, digest) is None:
            session.add(ForgottenAddress(address_hash=digest, forgotten_at=utcnow()))
    return Forgotten(address.email, bool(getattr(result, "rowcount", 0)))
