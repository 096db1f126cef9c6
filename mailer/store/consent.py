"""Proof of consent: the consent texts by version, and each subscriber's consent records.

GDPR Art. 7(1): the controller must be able to show that a person consented. Each confirmed
sign-up leaves a :class:`~mailer.store.models.Consent` row (when they signed up and
confirmed, on which form, from which client address, to which text); the text itself is
stored once per version in ``consent_texts``, keyed by its sha256, when first shown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite

from mailer.store.db import Store
from mailer.store.models import Consent, ConsentText, utcnow

_TEXTS = cast(Table, ConsentText.__table__)


def consent_hash(text: str) -> str:
    """The version of a consent text: sha256 hex of its UTF-8 bytes, exactly as shown."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_consent_text(store: Store, text: str) -> str:
    """Store ``text`` unless this version is there already (any process may race); return
    its hash."""
    digest = consent_hash(text)
    with store.engine.begin() as conn:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert(_TEXTS)
            .values(sha256=digest, text=text, first_seen_at=utcnow())
            .on_conflict_do_nothing(index_elements=[_TEXTS.c.sha256])
        )
    return digest


def consent_text(store: Store, digest: str) -> str | None:
    """The consent text of version ``digest``, or None if it was never stored."""
    with store.engine.connect() as conn:
        text: str | None = conn.scalar(select(_TEXTS.c.text).where(_TEXTS.c.sha256 == digest))
        return text


@dataclass(frozen=True)
class ConsentRecord:
    signed_up_at: datetime
    confirmed_at: datetime
    form: str
    ip: str
    text_sha256: str
    text: str


def consent_records(store: Store, subscriber_id: int) -> Sequence[ConsentRecord]:
    """Every confirmed sign-up of a subscriber, oldest first, with the text they agreed to."""
    query = (
        select(Consent, ConsentText.text)
        .join(ConsentText, ConsentText.sha256 == Consent.consent_sha256)
        .where(Consent.subscriber_id == subscriber_id)
        .order_by(Consent.id)
    )
    with store.session() as session:
        return [
            ConsentRecord(c.signed_up_at, c.confirmed_at, c.form, c.ip, c.consent_sha256, text)
            for c, text in session.execute(query)
        ]
