"""Send workers: the composed issue stored with the issue, claims on ledger rows, shared rate.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMNs with constant defaults: quick on a large ledger, on both backends.
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("preheader", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("html_template", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("text_template", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("rate", sa.Float(), nullable=True))
        batch.add_column(sa.Column("rate_next", sa.Float(), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("claim", sa.String(32), nullable=False, server_default=""))
    op.create_table(
        "send_claims",
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("lease_until", _when(), nullable=False),
        sa.Column("started_at", _when(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issues.id"],
            name=op.f("fk_send_claims_issue_id_issues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_send_claims")),
    )
    op.create_index(op.f("ix_send_claims_issue_id"), "send_claims", ["issue_id"])


def downgrade() -> None:
    op.drop_table("send_claims")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claim")
    with op.batch_alter_table("issues") as batch:
        for column in ("rate_next", "rate", "text_template", "html_template", "preheader"):
            batch.drop_column(column)
