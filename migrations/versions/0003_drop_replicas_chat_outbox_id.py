"""drop the never-written replicas table; chat messages name the announcement they were posted for

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Leases live on the runs themselves (runs.lease_owner), so `replicas` was never written. A failure
report's chat message keeps the outbox id of its report (`chat_messages.outbox_id`) as data, so the
report can be redrawn without taking its key apart.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("replicas")
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outbox_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_column("outbox_id")
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )
