"""The SQL behind /metrics and /healthz: totals and histograms computed by the database at refresh time.

Every function takes the session as a keyword argument and returns plain values. Numbers come from
the rows, not from a process's memory, so they survive restarts and agree across replicas.
Histograms are cumulative bucket counts (Prometheus's `le`), one SUM(CASE ...) per bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Select, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

# One spelling of "later - earlier in seconds" per dialect, shared with the digest.
from storage.digest_queries import _seconds_between
from storage.models import Attempt, Decision, OutboxMessage, Run, StepRun
from storage.status import StepStatus

RUN_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, 86400.0)
STEP_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
DECISION_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 43200.0, 86400.0)


@dataclass(frozen=True)
class Histogram:
    """One labelled series: cumulative counts per upper bound (same order as the bounds), count and sum."""

    labels: tuple[str, ...]
    cumulative: tuple[int, ...]
    count: int
    total: float


@dataclass(frozen=True)
class ModelUsage:
    """What the attempts that asked one model used."""

    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float


@dataclass(frozen=True)
class Snapshot:
    """Everything /metrics shows from the database, read in one session."""

    at: datetime
    runs: list[tuple[str, str, int]] = field(default_factory=list)  # (workflow, status, runs)
    attempts: list[tuple[str, str, int]] = field(default_factory=list)  # (status, error type or "", attempts)
    usage: list[ModelUsage] = field(default_factory=list)
    pending_checkpoints: list[tuple[str, int]] = field(default_factory=list)  # (workflow, steps awaiting)
    outbox_backlog: int = 0
    outbox_oldest_s: float = 0.0
    run_seconds: list[Histogram] = field(default_factory=list)  # labels (workflow, status)
    step_seconds: list[Histogram] = field(default_factory=list)  # labels (workflow, step)
    decision_seconds: list[Histogram] = field(default_factory=list)  # labels (workflow, action)


async def snapshot(*, session: AsyncSession, now: datetime) -> Snapshot:
    """Read every aggregate /metrics shows."""
    backlog, oldest = await outbox_backlog(session=session, now=now)
    return Snapshot(
        at=now,
        runs=await runs_by_status(session=session),
        attempts=await attempts_by_outcome(session=session),
        usage=await usage_by_model(session=session),
        pending_checkpoints=await pending_checkpoints(session=session),
        outbox_backlog=backlog,
        outbox_oldest_s=oldest,
        run_seconds=await run_seconds(session=session),
        step_seconds=await step_seconds(session=session),
        decision_seconds=await decision_seconds(session=session),
    )


async def runs_by_status(*, session: AsyncSession) -> list[tuple[str, str, int]]:
    """(workflow, status, runs) over every run recorded."""
    rows = await session.execute(select(Run.workflow, Run.status, func.count()).group_by(Run.workflow, Run.status))
    return [(w, s, int(n)) for w, s, n in rows.all()]


async def attempts_by_outcome(*, session: AsyncSession) -> list[tuple[str, str, int]]:
    """(attempt status, error type or "", attempts) over every attempt recorded."""
    rows = await session.execute(
        select(Attempt.status, Attempt.error_type, func.count()).group_by(Attempt.status, Attempt.error_type)
    )
    return [(s, e or "", int(n)) for s, e, n in rows.all()]


async def usage_by_model(*, session: AsyncSession) -> list[ModelUsage]:
    """Tokens and cost per model asked (a tool step's attempts name the tool)."""
    rows = await session.execute(
        select(Attempt.model, func.sum(Attempt.tokens_in), func.sum(Attempt.tokens_out), func.sum(Attempt.cost_usd))
        .group_by(Attempt.model)
    )
    return [ModelUsage(m or "", int(i or 0), int(o or 0), float(c or 0.0)) for m, i, o, c in rows.all()]


async def pending_checkpoints(*, session: AsyncSession) -> list[tuple[str, int]]:
    """(workflow, steps awaiting a decision)."""
    rows = await session.execute(
        select(Run.workflow, func.count())
        .select_from(StepRun)
        .join(Run, Run.id == StepRun.run_id)
        .where(StepRun.status == StepStatus.AWAITING_APPROVAL)
        .group_by(Run.workflow)
    )
    return [(w, int(n)) for w, n in rows.all()]


async def outbox_backlog(*, session: AsyncSession, now: datetime) -> tuple[int, float]:
    """(undelivered outbox messages, age in seconds of the oldest one, 0 when none)."""
    count, oldest = (await session.execute(
        select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.delivered_at.is_(None))
    )).one()
    if not count or oldest is None:
        return 0, 0.0
    if oldest.tzinfo is None:  # an aggregate's result skips the column type's conversion on SQLite
        oldest = datetime.fromisoformat(str(oldest)).replace(tzinfo=now.tzinfo)
    return int(count), max((now - oldest).total_seconds(), 0.0)


async def run_seconds(*, session: AsyncSession) -> list[Histogram]:
    """Durations of finished runs (started to finished, human waits included), by workflow and status."""
    seconds = _seconds_between(session, Run.finished_at, Run.started_at)
    query = select(Run.workflow, Run.status).where(Run.finished_at.is_not(None), Run.started_at.is_not(None))
    return await _histogram(session, query, seconds, RUN_BUCKETS)


async def step_seconds(*, session: AsyncSession) -> list[Histogram]:
    """Durations of finished steps, by workflow and step."""
    seconds = _seconds_between(session, StepRun.finished_at, StepRun.started_at)
    query = (
        select(Run.workflow, StepRun.step)
        .select_from(StepRun)
        .join(Run, Run.id == StepRun.run_id)
        .where(StepRun.finished_at.is_not(None), StepRun.started_at.is_not(None))
    )
    return await _histogram(session, query, seconds, STEP_BUCKETS)


async def decision_seconds(*, session: AsyncSession) -> list[Histogram]:
    """How long checkpoints waited for their decision, by workflow and action."""
    query = select(Run.workflow, Decision.action).select_from(Decision).join(Run, Run.id == Decision.run_id)
    return await _histogram(session, query, cast(Decision.wait_s, Float), DECISION_BUCKETS)


async def _histogram(session: AsyncSession, query: Select[Any], seconds: Any, bounds: Sequence[float]) -> list[Histogram]:
    """Group `query` by its selected columns and count `seconds` into cumulative buckets."""
    groups = list(query.selected_columns)
    value = func.max(seconds, 0.0) if session.bind.dialect.name == "sqlite" else func.greatest(seconds, 0.0)
    per_bucket = [func.sum(case((value <= bound, 1), else_=0)) for bound in bounds]
    rows = await session.execute(query.add_columns(func.count(), func.sum(value), *per_bucket).group_by(*groups))
    width = len(groups)
    return [
        Histogram(tuple(str(v) for v in row[:width]), tuple(int(c or 0) for c in row[width + 2:]),
                  int(row[width]), float(row[width + 1] or 0.0))
        for row in rows.all()
    ]
