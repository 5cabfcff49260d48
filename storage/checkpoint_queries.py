"""Checkpoint versions, revisions and approvals: the guarded writes that keep each exactly once, and reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Approval, CheckpointVersion, StepRun
from storage.status import StepStatus


async def hold(*, session: AsyncSession, step_run_id: int, version: int) -> bool:
    """Lock a waiting checkpoint at `version` for this transaction (a no-op UPDATE takes the row lock on
    PostgreSQL, the write lock on SQLite): approvals of one checkpoint are counted one transaction at a time.
    False when it no longer waits at that version."""
    result = await session.execute(
        update(StepRun)
        .where(StepRun.id == step_run_id, StepRun.status == StepStatus.AWAITING_APPROVAL, StepRun.version == version)
        .values(version=StepRun.version)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def current(*, session: AsyncSession, step_run_id: int) -> tuple[str, int, int] | None:
    """(status, version, revisions) of a step as committed now (not the session's cached copy)."""
    row = (await session.execute(
        select(StepRun.status, StepRun.version, StepRun.revisions).where(StepRun.id == step_run_id)
    )).first()
    return None if row is None else (row[0], int(row[1]), int(row[2]))


async def start_revision(
    *, session: AsyncSession, step_run_id: int, version: int, revisions: int, input_override: Any, attempts: int
) -> bool:
    """Send a waiting checkpoint at `version` back to be run again as version + 1 (guarded: of racing
    revisions one wins). Its attempts budget starts afresh; its deadlines start again when it waits again."""
    result = await session.execute(
        update(StepRun)
        .where(StepRun.id == step_run_id, StepRun.status == StepStatus.AWAITING_APPROVAL, StepRun.version == version,
               StepRun.revisions == revisions)
        .values(status=StepStatus.PENDING, version=version + 1, revisions=revisions + 1, input_override=input_override,
                retry_base=attempts, awaiting_since=None, reminded_at=None, escalated_at=None, due_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def replace_version(*, session: AsyncSession, step_run_id: int, version: int, output: Any, now: datetime) -> bool:
    """A waiting checkpoint's output replaced by a person's edit, as version + 1, still waiting (guarded)."""
    result = await session.execute(
        update(StepRun)
        .where(StepRun.id == step_run_id, StepRun.status == StepStatus.AWAITING_APPROVAL, StepRun.version == version)
        .values(version=version + 1, output=output, awaiting_since=now, due_at=None)  # due_at: dated afresh
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def first_attempt_of(*, session: AsyncSession, step_run_id: int, version: int) -> int:
    """The number of the first attempt that made `version`: after the attempts of the version before."""
    last = await session.scalar(
        select(CheckpointVersion.last_attempt).where(CheckpointVersion.step_run_id == step_run_id,
                                                     CheckpointVersion.version == version - 1)
    )
    return int(last or 0) + 1


def add_version(*, session: AsyncSession, step_run: StepRun, version: int, output: Any, outcome: str, by: str | None,
                at: datetime, note: str | None = None, first_attempt: int = 1) -> None:
    """Keep one version as people saw it, and how it ended (revised, edited, or the decision)."""
    session.add(CheckpointVersion(
        step_run_id=step_run.id, run_id=step_run.run_id, step=step_run.step, version=version, output=output,
        first_attempt=first_attempt, last_attempt=step_run.attempts, outcome=outcome, note=note, by=by, at=at,
    ))


async def versions(*, session: AsyncSession, run_id: str, step: str | None = None) -> Sequence[CheckpointVersion]:
    """A run's recorded checkpoint versions, in order."""
    query = select(CheckpointVersion).where(CheckpointVersion.run_id == run_id)
    if step is not None:
        query = query.where(CheckpointVersion.step == step)
    return (await session.scalars(query.order_by(CheckpointVersion.step, CheckpointVersion.version))).all()


async def version_row(*, session: AsyncSession, step_run_id: int, version: int) -> CheckpointVersion | None:
    """One recorded version of a checkpoint."""
    return await session.scalar(
        select(CheckpointVersion).where(CheckpointVersion.step_run_id == step_run_id, CheckpointVersion.version == version)
    )


def add_approval(*, session: AsyncSession, step_run: StepRun, version: int, by: str, at: datetime) -> None:
    """Count one approver's approval of `version` (unique per approver and version)."""
    session.add(Approval(step_run_id=step_run.id, run_id=step_run.run_id, version=version, approved_by=by, at=at))


async def approvers(*, session: AsyncSession, step_run_id: int, version: int) -> list[str]:
    """Who approved `version` of a checkpoint so far, in order."""
    rows = await session.scalars(
        select(Approval.approved_by).where(Approval.step_run_id == step_run_id, Approval.version == version).order_by(Approval.id)
    )
    return list(rows.all())
