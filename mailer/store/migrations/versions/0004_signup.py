"""Sign-up: pending sign-ups, their outbox, rate-limit counters, consent texts and records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consent_texts",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("first_seen_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_consent_texts")),
    )
    op.create_table(
        "signup_limits",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("window_end", _when(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_signup_limits")),
    )
    op.create_index(op.f("ix_signup_limits_window_end"), "signup_limits", ["window_end"])
    op.create_table(
        "signups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("signed_up_at", _when(), nullable=False),
        sa.Column("form", sa.String(length=200), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("consent_sha256", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("expires_at", _when(), nullable=False),
        sa.Column("mailed_at", _when(), nullable=True),
        sa.Column("confirmed_at", _when(), nullable=True),
        sa.ForeignKeyConstraint(
            ["consent_sha256"],
            ["consent_texts.sha256"],
            name=op.f("fk_signups_consent_sha256_consent_texts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signups")),
        sa.UniqueConstraint("email_key", name=op.f("uq_signups_email_key")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_signups_token_hash")),
    )
    op.create_index(op.f("ix_signups_expires_at"), "signups", ["expires_at"])
    op.create_table(
        "signup_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signup_id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sent",
                "failed",
                name="outbox_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _when(), nullable=False),
        sa.Column("lease_owner", sa.String(length=32), nullable=False),
        sa.Column("lease_until", _when(), nullable=True),
        sa.Column("last_reply", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("sent_at", _when(), nullable=True),
        sa.ForeignKeyConstraint(
            ["signup_id"],
            ["signups.id"],
            name=op.f("fk_signup_outbox_signup_id_signups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signup_outbox")),
    )
    op.create_index("ix_signup_outbox_due", "signup_outbox", ["status", "next_attempt_at"])
    op.create_index(op.f("ix_signup_outbox_signup_id"), "signup_outbox", ["signup_id"])
    op.create_index(
        "uq_signup_outbox_pending",
        "signup_outbox",
        ["signup_id"],
        unique=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("signed_up_at", _when(), nullable=False),
        sa.Column("confirmed_at", _when(), nullable=False),
        sa.Column("form", sa.String(length=200), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("consent_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_sha256"],
            ["consent_texts.sha256"],
            name=op.f("fk_consents_consent_sha256_consent_texts"),
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_consents_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    op.create_index(op.f("ix_consents_subscriber_id"), "consents", ["subscriber_id"])


def downgrade() -> None:
    op.drop_table("consents")
    op.drop_table("signup_outbox")
    op.drop_table("signups")
    op.drop_table("signup_limits")
    op.drop_table("consent_texts")
