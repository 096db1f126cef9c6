"""Scheduled sends: one row per issue set for a time (`mailer send --at`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("at", _when(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "scheduled",
                "started",
                "missed",
                name="schedule_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("composed", sa.JSON(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("started_at", _when(), nullable=True),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("missed_at", _when(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("slug", name=op.f("uq_schedules_slug")),
    )
    op.create_index("ix_schedules_state_at", "schedules", ["state", "at"])


def downgrade() -> None:
    op.drop_table("schedules")
