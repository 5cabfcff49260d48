"""The checkpoint deadline scan's SQL: waiting checkpoints by their next due time (ix_step_runs_status_due).

A waiting checkpoint's `due_at` is NULL until a scan dates it (from its spec), then the time of its next
reminder or timeout, or the far future when nothing more is due. Each scan reads the undated and the
due ones only: its cost grows with what is due, not with what is waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from storage.db import Write
from storage.models import Run, StepRun
from storage.status import RunStatus, StepStatus

_COLUMNS = (StepRun.id, StepRun.run_id, StepRun.step, StepRun.awaiting_since, StepRun.reminded_at, StepRun.escalated_at,
            Run.workflow, Run.spec)


async def _waiting(session: AsyncSession, condition: ColumnElement[bool], limit: int) -> Sequence[Row]:
    rows = await session.execute(
        select(*_COLUMNS)
        .join(Run, Run.id == StepRun.run_id)
        .where(StepRun.status == StepStatus.AWAITING_APPROVAL, condition, Run.status == RunStatus.AWAITING_APPROVAL)
        .order_by(StepRun.due_at, StepRun.id)
        .limit(limit)
    )
    return rows.all()


async def undated_checkpoints(*, session: AsyncSession, limit: int) -> Sequence[Row]:
    """Waiting checkpoints no scan has dated yet (id, run_id, step, awaiting_since, reminded_at,
    escalated_at, workflow, spec)."""
    return await _waiting(session, StepRun.due_at.is_(None), limit)


async def due_checkpoints(*, session: AsyncSession, now: datetime, limit: int) -> Sequence[Row]:
    """Waiting checkpoints whose next deadline is `now` or before, the most overdue first (columns as above)."""
    return await _waiting(session, StepRun.due_at <= now, limit)


_SET_DUE = (
    update(StepRun)
    .where(StepRun.id == bindparam("p_id"), StepRun.status == StepStatus.AWAITING_APPROVAL)
    .values(due_at=bindparam("p_due"))
)


def set_due_write(dates: Sequence[tuple[int, datetime]]) -> Write:
    """Date waiting checkpoints' next deadlines, (step run id, due at) each, in one executemany (a decided
    checkpoint is left alone)."""
    return (_SET_DUE, [{"p_id": step_run_id, "p_due": due} for step_run_id, due in dates], False)
