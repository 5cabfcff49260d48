"""the digest reads covering indexes; checkpoint deadlines are found by their due time

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

- attempts.workflow, decisions.workflow: the run's workflow, copied at insert (backfilled here), so the
  digest groups them without joining the runs table. NULL is allowed (a writer that does not set it):
  the digest then looks the workflow up.
- step_runs.due_at: a waiting checkpoint's next deadline (agents/deadlines.py); the scan every 30 s
  reads only the due ones through ix_step_runs_status_due. NULL until the first scan sets it.
- Covering indexes for every digest query (storage/digest_queries.py); the single-column indexes they
  replace (runs.created_at, attempts.started_at, decisions.decided_at) are dropped, their column leads.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_RUN_INDEXES = {
    "ix_runs_created_workflow": ["created_at", "workflow", "trigger"],
    "ix_runs_workflow_status_finished": ["workflow", "status", "finished_at"],
    "ix_runs_trigger": ["trigger", "finished_at", "workflow", "status", "id"],
}
_DECISIONS_DIGEST = ["decided_at", "workflow", "action", "run_id", "decided_by", "wait_s", "chars_changed", "chars_total"]


def upgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workflow", sa.String(length=200), nullable=True))
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workflow", sa.String(length=200), nullable=True))
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    for table in ("attempts", "decisions"):
        op.execute(f"UPDATE {table} SET workflow = (SELECT runs.workflow FROM runs WHERE runs.id = {table}.run_id)")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_created_at")
        batch_op.drop_index("ix_runs_finished_at")
        batch_op.create_index("ix_runs_finished_at", ["finished_at", "workflow", "status", "started_at", "trigger"])
        for name, columns in _RUN_INDEXES.items():
            batch_op.create_index(name, columns)
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_started_at")
        batch_op.create_index("ix_attempts_digest", ["workflow", "started_at", "number", "cost_usd"])
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_decided_at")
        batch_op.create_index("ix_decisions_digest", _DECISIONS_DIGEST)
        batch_op.create_index("ix_decisions_workflow_action", ["workflow", "action", "decided_at"])
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.create_index("ix_step_runs_status_due", ["status", "due_at"])


def downgrade() -> None:
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_step_runs_status_due")
        batch_op.drop_column("due_at")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_workflow_action")
        batch_op.drop_index("ix_decisions_digest")
        batch_op.create_index("ix_decisions_decided_at", ["decided_at"])
        batch_op.drop_column("workflow")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_digest")
        batch_op.create_index("ix_attempts_started_at", ["started_at"])
        batch_op.drop_column("workflow")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for name in _RUN_INDEXES:
            batch_op.drop_index(name)
        batch_op.drop_index("ix_runs_finished_at")
        batch_op.create_index("ix_runs_finished_at", ["finished_at", "workflow", "status"])
        batch_op.create_index("ix_runs_created_at", ["created_at"])
