"""runs remember whether they were mocked

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08

- runs.mocked: the run's model steps were answered from their output contracts by no provider
  (`overseer run --mock`, `overseer serve --mock`). Runs from before this revision were not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mocked", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("mocked")
