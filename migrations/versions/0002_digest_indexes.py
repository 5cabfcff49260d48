"""digest indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The digest groups runs by the time they finished (covering: no table access), looks up the workflow
of attempts, decisions and events by run id without reading the (wide: spec, inputs) runs rows, and
counts escalation events by kind and time. Matching model entries (storage/models.py):
    Run.__table_args__:   Index("ix_runs_finished_at", "finished_at", "workflow", "status"),
                          Index("ix_runs_id_workflow", "id", "workflow"),
    Event.__table_args__: (Index("ix_events_kind_at", "kind", "at"),)
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_finished_at", ["finished_at", "workflow", "status"], unique=False)
        batch_op.create_index("ix_runs_id_workflow", ["id", "workflow"], unique=False)
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_kind_at", ["kind", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_kind_at")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_id_workflow")
        batch_op.drop_index("ix_runs_finished_at")
