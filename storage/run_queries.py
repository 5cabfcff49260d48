"""Runs, their steps, attempts, decisions and events: reads and the race-free state changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Write
from storage.models import Attempt, Decision, Event, Run, StepRun, utcnow
from storage.status import StepStatus


async def get_run(*, session: AsyncSession, run_id: str) -> Run | None:
    """One run by id."""
    return await session.get(Run, run_id)


async def find_run(*, session: AsyncSession, ref: str) -> Run | None:
    """A run by its id or a unique prefix of it (people type short ids)."""
    run = await session.get(Run, ref)
    if run is not None or len(ref) < 4:
        return run
    rows = (await session.scalars(select(Run).where(Run.id.startswith(ref, autoescape=True)).limit(2))).all()
    return rows[0] if len(rows) == 1 else None


async def step_runs(*, session: AsyncSession, run_id: str) -> Sequence[StepRun]:
    """A run's steps in spec order."""
    return (await session.scalars(select(StepRun).where(StepRun.run_id == run_id).order_by(StepRun.position))).all()


async def get_step_run(*, session: AsyncSession, run_id: str, step: str) -> StepRun | None:
    """One step of one run."""
    return await session.scalar(select(StepRun).where(StepRun.run_id == run_id, StepRun.step == step))


async def attempts(*, session: AsyncSession, run_id: str, step: str | None = None) -> Sequence[Attempt]:
    """A run's attempts in order, optionally of one step."""
    query = select(Attempt).where(Attempt.run_id == run_id)
    if step is not None:
        query = query.where(Attempt.step == step)
    return (await session.scalars(query.order_by(Attempt.id))).all()


async def decisions(*, session: AsyncSession, run_id: str) -> Sequence[Decision]:
    """A run's checkpoint decisions in order."""
    return (await session.scalars(select(Decision).where(Decision.run_id == run_id).order_by(Decision.id))).all()


async def decision_for(*, session: AsyncSession, step_run_id: int) -> Decision | None:
    """The decision taken at one checkpoint, if any."""
    return await session.scalar(select(Decision).where(Decision.step_run_id == step_run_id))


async def list_runs(
    *, session: AsyncSession, limit: int = 20, workflow: str | None = None, status: str | None = None
) -> Sequence[Run]:
    """Runs, newest first."""
    query = select(Run).order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
    if workflow:
        query = query.where(Run.workflow == workflow)
    if status:
        query = query.where(Run.status == status)
    return (await session.scalars(query)).all()


async def set_run_status(
    *, session: AsyncSession, run_id: str, to: str, allowed_from: Sequence[str], **values: Any
) -> bool:
    """Move a run to `to` only if it is in one of `allowed_from`: the race-free state change."""
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status.in_(allowed_from))
        .values(status=to, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def set_step_status(
    *, session: AsyncSession, step_run_id: int, to: str, allowed_from: Sequence[str], **values: Any
) -> bool:
    """Move a step to `to` only if it is in one of `allowed_from`."""
    result = await session.execute(
        update(StepRun)
        .where(StepRun.id == step_run_id, StepRun.status.in_(allowed_from))
        .values(status=to, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def mark_waiting_once_write(*, step_run_id: int, column: str, now: datetime) -> Write:
    """Set a waiting checkpoint's reminded_at or escalated_at, only the first time (guarded: of racing
    checkers one writes, the others change nothing)."""
    col = getattr(StepRun, column)
    stmt = (
        update(StepRun)
        .where(StepRun.id == step_run_id, col.is_(None), StepRun.status == StepStatus.AWAITING_APPROVAL)
        .values({column: now})
    )
    return (stmt, {}, True)


def add_event(
    *, session: AsyncSession, run_id: str | None, kind: str, actor: str | None, at: datetime | None = None, **detail: Any
) -> None:
    """Keep a note of something that is not a state change (a refused click, an escalation)."""
    session.add(Event(run_id=run_id, kind=kind, actor=actor, detail=detail, at=at or utcnow()))


async def events(*, session: AsyncSession, run_id: str | None = None, kind: str | None = None) -> Sequence[Event]:
    """Recorded events, oldest first."""
    query = select(Event)
    if run_id is not None:
        query = query.where(Event.run_id == run_id)
    if kind is not None:
        query = query.where(Event.kind == kind)
    return (await session.scalars(query.order_by(Event.id))).all()
