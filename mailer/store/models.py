"""SQLAlchemy models: subscribers, their status history, issues as sent, and the ledger;
sign-ups waiting for confirmation, their outbox, rate-limit counters and consent records.

The schema is the contract between the stages: the import writes ``subscribers``, the send
run writes ``issues`` and ``deliveries``, the web app flips a subscriber's status. Any change
here needs an Alembic revision in ``mailer/store/migrations/versions``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# The send declares its ledger's states (mailer.send.ports); the schema stores those.
from mailer.send.ports import DeliveryStatus as DeliveryStatus
from mailer.send.ports import IssueState as IssueState
from mailer.send.ports import OutboxStatus as OutboxStatus

# Deterministic constraint names, so migrations can drop and alter them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the zone (timestamptz); SQLite has none and would hand back naive values,
    so values are stored as naive UTC there and read back as aware UTC. Naive input is taken
    as UTC. Comparisons in Python then work the same on both backends.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SubscriberStatus(enum.StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint: portable and easy to migrate.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Opaque identifier used in links: 128 random bits, see mailer.tokens.
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    # The normalised address as it is shown and sent to.
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased address: uniqueness is case-insensitive on every backend.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[SubscriberStatus] = mapped_column(
        _enum(SubscriberStatus, "subscriber_status"), default=SubscriberStatus.ACTIVE, index=True
    )
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Why and how the status last changed: e.g. source "one-click", reason "List-Unsubscribe".
    status_source: Mapped[str] = mapped_column(String(32), default="")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    status_issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("issues.id", ondelete="SET NULL"), default=None
    )

    events: Mapped[list[SubscriberEvent]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )


class SubscriberEvent(Base):
    """Append-only history of status changes (an unsubscribe is never lost or overwritten)."""

    __tablename__ = "subscriber_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    old_status: Mapped[str] = mapped_column(String(16), default="")
    new_status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("issues.id", ondelete="SET NULL"), default=None
    )

    subscriber: Mapped[Subscriber] = relationship(back_populates="events")


class ForgottenAddress(Base):
    """One-way hashes of erased addresses (GDPR `forget`), so imports do not re-add them."""

    __tablename__ = "forgotten_addresses"

    address_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    forgotten_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Issue(Base):
    """A newsletter issue as recorded when its send started."""

    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    subject: Mapped[str] = mapped_column(String(998))
    date: Mapped[str] = mapped_column(String(10))  # ISO date of the issue, as in its manifest
    content_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[IssueState] = mapped_column(
        _enum(IssueState, "issue_state"), default=IssueState.SENDING
    )
    # The web version (no subscriber data), served by the archive exactly as it was sent.
    web_html: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The composed issue as the send started it (its slots kept): a worker on any host sends
    # exactly this, without the issue folder (mailer.store.composed).
    preheader: Mapped[str] = mapped_column(Text, default="", server_default="")
    html_template: Mapped[str] = mapped_column(Text, default="", server_default="")
    text_template: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The issue's --rate (messages per second, None: unlimited), shared by all its workers,
    # and the next free send slot (seconds of the database's clock; mailer.store.claims).
    rate: Mapped[float | None] = mapped_column(Float, default=None)
    rate_next: Mapped[float | None] = mapped_column(Float, default=None)


class Delivery(Base):
    """The ledger: one row per issue and recipient, snapshotted when the send starts."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id", name="uq_deliveries_issue_subscriber"),
        Index("ix_deliveries_issue_status", "issue_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_reply: Mapped[str] = mapped_column(Text, default="")
    # Indexed: a bounce report that quotes only our Message-ID is matched through it.
    message_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # What came back after the server took the copy (mailer.bounces): "" none, else the
    # worst report's kind (hard, soft, policy, complaint), its status code and its words.
    bounce: Mapped[str] = mapped_column(String(16), default="", server_default="")
    bounce_status: Mapped[str] = mapped_column(String(16), default="", server_default="")
    bounce_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The SendClaim token of the run that holds the row ("" none): every outcome a run writes
    # is fenced by it, so a run that lost its lease cannot overwrite its rows' new outcome.
    claim: Mapped[str] = mapped_column(String(32), default="", server_default="")


class SendClaim(Base):
    """One run's lease on its issue's rows (mailer.store.claims): renewed while the run is
    alive; once ``lease_until`` has passed, its rows may be claimed by another run."""

    __tablename__ = "send_claims"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    host: Mapped[str] = mapped_column(String(200), default="")


class BounceReport(Base):
    """Every report `mailer bounces` handled, once each (``key``: a hash of its bytes), so a
    second run over the same messages changes nothing. Unrecognised ones keep no details."""

    __tablename__ = "bounce_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    shape: Mapped[str] = mapped_column(String(16), default="")
    source: Mapped[str] = mapped_column(String(16), default="")
    status: Mapped[str] = mapped_column(String(32), default="")
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    report_message_id: Mapped[str] = mapped_column(String(255), default="")
    # Erasing a subscriber erases their reports (the words may quote the address).
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), default=None, index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), default=None
    )
    issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("issues.id", ondelete="SET NULL"), default=None, index=True
    )


# --- sign-up -------------------------------------------------------------------------------


class ConsentText(Base):
    """Every version of the consent text people were shown, stored once, by its hash."""

    __tablename__ = "consent_texts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Signup(Base):
    """A sign-up waiting for its confirmation: not a subscriber, never sent an issue.

    One per address. ``token_hash`` is the hash of the link's nonce (see mailer.tokens); it is
    None while the sign-up is held (the hourly cap of confirmation emails was reached).
    """

    __tablename__ = "signups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    signed_up_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    form: Mapped[str] = mapped_column(String(200), default="")  # a path here, or an origin
    ip: Mapped[str] = mapped_column(String(45), default="")
    consent_sha256: Mapped[str] = mapped_column(ForeignKey("consent_texts.sha256"))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class SignupMail(Base):
    """The outbox: one confirmation email to send, written with its sign-up. At most one
    pending per sign-up (a newer email replaces it: one upsert on the form's hot path)."""

    __tablename__ = "signup_outbox"
    __table_args__ = (
        Index("ix_signup_outbox_due", "status", "next_attempt_at"),
        Index(
            "uq_signup_outbox_pending",
            "signup_id",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signup_id: Mapped[int] = mapped_column(ForeignKey("signups.id", ondelete="CASCADE"), index=True)
    # The link's nonce (hex) while the email is to send; emptied once it is final.
    nonce: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_owner: Mapped[str] = mapped_column(String(32), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_reply: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class SignupLimit(Base):
    """A rate-limit counter shared by every web worker: hits in the window ending at
    ``window_end`` (per client address, per email address, or for all sign-ups)."""

    __tablename__ = "signup_limits"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)


class Consent(Base):
    """Proof of consent (GDPR Art. 7(1)): who signed up, when, where, to which wording.

    One row per confirmed sign-up of the subscriber (a returning one keeps the earlier ones).
    """

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    signed_up_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    form: Mapped[str] = mapped_column(String(200), default="")
    ip: Mapped[str] = mapped_column(String(45), default="")
    consent_sha256: Mapped[str] = mapped_column(ForeignKey("consent_texts.sha256"))


# --- scheduled sends -----------------------------------------------------------------------


class ScheduleState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for its time
    STARTED = "started"  # a worker recorded the issue and snapshotted it (now the ledger's)
    MISSED = "missed"  # no worker started it within schedule_grace_minutes: the editor decides


class Schedule(Base):
    """A send set for a time (`mailer send --at`), one per issue: the issue as composed then,
    and its time. A worker's ``start_due`` claims the row and records the issue, snapshotting
    its recipients, in one transaction (mailer.store.schedules)."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_state_at", "state", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    number: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(998))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[ScheduleState] = mapped_column(
        _enum(ScheduleState, "schedule_state"), default=ScheduleState.SCHEDULED
    )
    # The composed issue (mailer.send.ports.IssueFacts' fields): a worker on any host starts
    # exactly what the editor built, without the issue folder.
    composed: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rate: Mapped[float | None] = mapped_column(Float, default=None)  # --rate, messages/s
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    started_by: Mapped[str] = mapped_column(String(200), default="")  # host:pid
    missed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


# --- published images --------------------------------------------------------------------


class Media(Base):
    """A published image of an issue (mailer.compose.images), stored when its send starts so
    every ``mailer serve`` host answers ``/media/NAME``. ``name`` is the hash of ``data``: a
    row never changes, and the same image in two issues is one row."""

    __tablename__ = "media"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)  # "<32 hex>.jpg"
    content_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    issue_slug: Mapped[str] = mapped_column(String(200))  # the first issue that sent it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
