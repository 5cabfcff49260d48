"""checkpoint versions, revisions and approvals

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01

- step_runs.version: the checkpoint's version as shown (1, then +1 per revision); buttons carry it.
- step_runs.revisions: how many Revise rounds the checkpoint has used (checkpoint.max_revisions).
- checkpoint_versions: each version people saw (its output, the attempts that made it, the note that
  asked for the next one, or how it was decided).
- approvals: one row per approver per version, for checkpoints that ask for several approvals.
Written against 0005; re-chained after 0006 at the merge.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("revisions", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "checkpoint_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("step_run_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("first_attempt", sa.Integer(), nullable=False),
        sa.Column("last_attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("by", sa.String(length=200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_checkpoint_versions_run_id_runs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["step_run_id"], ["step_runs.id"], name=op.f("fk_checkpoint_versions_step_run_id_step_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoint_versions")),
        sa.UniqueConstraint("step_run_id", "version", name=op.f("uq_checkpoint_versions_step_run_id_version")),
    )
    with op.batch_alter_table("checkpoint_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkpoint_versions_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_checkpoint_versions_run_id"), ["run_id"], unique=False)
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("step_run_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_approvals_run_id_runs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["step_run_id"], ["step_runs.id"], name=op.f("fk_approvals_step_run_id_step_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint("step_run_id", "version", "approved_by", name=op.f("uq_approvals_step_run_id_version_approved_by")),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approvals_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approvals_run_id"))
    op.drop_table("approvals")
    with op.batch_alter_table("checkpoint_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkpoint_versions_run_id"))
        batch_op.drop_index(batch_op.f("ix_checkpoint_versions_at"))
    op.drop_table("checkpoint_versions")
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_column("revisions")
        batch_op.drop_column("version")
