"""Bounces and complaints: what came back for each delivery, and every report handled.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMNs with a constant default: no table rebuild on SQLite, no rewrite on
    # PostgreSQL, so this is quick on a large ledger.
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("bounce", sa.String(16), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("bounce_status", sa.String(16), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("bounce_reason", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("bounced_at", _when(), nullable=True))
    op.create_index(op.f("ix_deliveries_message_id"), "deliveries", ["message_id"])
    op.create_table(
        "bounce_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("at", _when(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("shape", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("report_message_id", sa.String(length=255), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_bounce_reports_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issues.id"],
            name=op.f("fk_bounce_reports_issue_id_issues"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_bounce_reports_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_reports")),
        sa.UniqueConstraint("key", name=op.f("uq_bounce_reports_key")),
    )
    op.create_index(op.f("ix_bounce_reports_issue_id"), "bounce_reports", ["issue_id"])
    op.create_index(op.f("ix_bounce_reports_subscriber_id"), "bounce_reports", ["subscriber_id"])


def downgrade() -> None:
    op.drop_table("bounce_reports")
    op.drop_index(op.f("ix_deliveries_message_id"), table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("bounced_at")
        batch.drop_column("bounce_reason")
        batch.drop_column("bounce_status")
        batch.drop_column("bounce")
