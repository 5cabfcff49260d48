"""attempts are recorded when they start; runs count the drivers that died with them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

- attempts.status: started (written before the call) | succeeded | failed | interrupted. Rows from
  before this revision ended one way or the other: failed where they have an error, else succeeded.
- runs.crashes: how often a run was taken over from a driver that died with it (the dead-letter count).
- step_runs.retry_base: the step's attempt count when a person last retried it; the attempt limit
  counts from there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=20), server_default="succeeded", nullable=False))
    op.execute("UPDATE attempts SET status = 'failed' WHERE error_type IS NOT NULL")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("crashes", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_base", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_column("retry_base")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("crashes")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("status")
