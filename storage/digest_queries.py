"""The SQL behind the daily digest: GROUP BY in the database, over covering indexes.

Every function takes the session as a keyword argument and returns plain tuples. Time windows are
half-open, [start, end). Runs are attributed to the window by `created_at` (started) or `finished_at`
(their outcome); attempts by `started_at`; decisions by `decided_at`; escalations by `events.at`.
Runs whose trigger is in `uncounted` (profile and eval runs) are left out everywhere.

Each query reads one index and no table row (migrations/versions/0006): ix_runs_created_workflow,
ix_runs_finished_at (finished_at, workflow, status, started_at, trigger), ix_runs_workflow_status_finished
(the 14-day series), ix_runs_trigger (the uncounted runs), ix_attempts_digest and ix_decisions_digest
(attempts and decisions carry their run's workflow; NULL falls back to a lookup), ix_events_kind_at.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, String, and_, case, cast, extract, func, literal, select, true, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from storage.models import Attempt, Decision, Event, OutboxMessage, Run, StepRun
from storage.status import Action, RunStatus, StepStatus

ESCALATION_EVENT = "checkpoint_escalated"


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name


def _seconds_between(session: AsyncSession, later: Any, earlier: Any) -> ColumnElement[float]:
    """later - earlier in seconds, computed by the database."""
    if _dialect(session) == "sqlite":
        return cast((func.julianday(later) - func.julianday(earlier)) * 86400.0, Float)
    return cast(extract("epoch", later - earlier), Float)


def _counted(run: Any, uncounted: Sequence[str]) -> ColumnElement[bool]:
    """The run (a Run or an alias) is counted: its trigger is not one of `uncounted`."""
    return run.trigger.not_in(list(uncounted)) if uncounted else true()


def _counted_id(run_id: Any, uncounted: Sequence[str]) -> ColumnElement[bool]:
    """The run with this id is counted: the uncounted runs are few, found by ix_runs_trigger."""
    if not uncounted:
        return true()
    return run_id.not_in(_uncounted_runs(Run.id, uncounted=uncounted))


def _uncounted_runs(*columns: Any, uncounted: Sequence[str]) -> Any:
    """SELECT columns of the uncounted runs, by ix_runs_trigger (covering: with statistics that say every
    run has one trigger, SQLite would read the whole runs table rather than look its rows up)."""
    return select(*columns).where(Run.trigger.in_(list(uncounted)))


def _workflow_of(row: Any) -> ColumnElement[str]:
    """An attempt's or a decision's workflow: its own copy, else its run's."""
    return func.coalesce(row.workflow, select(Run.workflow).where(Run.id == row.run_id).scalar_subquery())


async def runs_started(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, int]]:
    """(workflow, runs created in [start, end))."""
    rows = await session.execute(
        select(Run.workflow, func.count())
        .where(Run.created_at >= start, Run.created_at < end, _counted(Run, uncounted))
        .group_by(Run.workflow)
    )
    return [(w, int(n)) for w, n in rows.all()]


async def runs_finished_by_day(
    *, session: AsyncSession, end: datetime, buckets: int, statuses: Sequence[str], uncounted: Sequence[str] = ()
) -> list[tuple[str, str, int, int]]:
    """(workflow, final status, day bucket, runs) for runs finished in [end - buckets days, end) with one of
    `statuses`.

    Bucket k holds [end - (k+1) days, end - k days): 0 is the last 24 hours. No GROUP BY (on SQLite a
    sort of every row): the workflows are found by a loose index scan (a recursive CTE, one seek each),
    and each (workflow, status, bucket) is a count over one range of ix_runs_workflow_status_finished.
    The uncounted runs (few) are counted the same way and taken off.
    """
    day = timedelta(days=1)
    w = select(func.min(Run.workflow).label("x")).cte("w", recursive=True)
    nxt = aliased(Run)
    w = w.union_all(select(select(func.min(nxt.workflow)).where(nxt.workflow > w.c.x).scalar_subquery()).where(w.c.x.is_not(None)))
    st = union_all(*(select(literal(s, String).label("s")) for s in statuses)).cte("st")
    r = aliased(Run)
    counts = [
        select(func.count()).select_from(r)
        .where(r.workflow == w.c.x, r.status == st.c.s, r.finished_at >= end - (k + 1) * day, r.finished_at < end - k * day)
        .scalar_subquery()
        for k in range(buckets)
    ]
    rows = await session.execute(select(w.c.x, st.c.s, *counts).select_from(w).join(st, true()).where(w.c.x.is_not(None)))
    found: dict[tuple[str, str, int], int] = {}
    for wf, status, *per_day in rows.all():
        for k, n in enumerate(per_day):
            if n:
                found[(wf, status, k)] = int(n)
    if uncounted:
        for wf, status, finished in await session.execute(
            _uncounted_runs(Run.workflow, Run.status, Run.finished_at, uncounted=uncounted).where(
                Run.finished_at >= end - buckets * day, Run.finished_at < end, Run.status.in_(list(statuses)))
        ):
            q, rest = divmod(end - finished, day)
            key = (wf, status, q - 1 if not rest else q)
            found[key] -= 1
    return [(wf, status, k, n) for (wf, status, k), n in found.items() if n]


async def runs_waiting(*, session: AsyncSession, uncounted: Sequence[str] = ()) -> list[tuple[str, int]]:
    """(workflow, runs waiting at a checkpoint right now).

    Fetches the (few) waiting runs' workflow through ix_runs_status and counts them here: with a
    GROUP BY, SQLite's planner prefers a full scan of ix_runs_workflow to avoid a sort.
    """
    counts: dict[str, int] = {}
    for wf in await session.scalars(
        select(Run.workflow).where(Run.status == RunStatus.AWAITING_APPROVAL, _counted(Run, uncounted))
    ):
        counts[wf] = counts.get(wf, 0) + 1
    return sorted(counts.items())


async def failed_steps(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, str, int]]:
    """(workflow, step, failures) for runs that finished failed in [start, end), by the step that failed."""
    rows = await session.execute(
        select(Run.workflow, StepRun.step, func.count())
        .join(StepRun, StepRun.run_id == Run.id)
        .where(Run.finished_at >= start, Run.finished_at < end, Run.status == RunStatus.FAILED, StepRun.status == StepStatus.FAILED,
               _counted(Run, uncounted))
        .group_by(Run.workflow, StepRun.step)
    )
    return [(w, s, int(n)) for w, s, n in rows.all()]


async def retry_exhaustions(
    *, session: AsyncSession, start: datetime, end: datetime, transient_types: Sequence[str], uncounted: Sequence[str] = ()
) -> list[tuple[str, int]]:
    """(workflow, failed steps whose retries ran out): more than one attempt, the last one transient."""
    rows = await session.execute(
        select(Run.workflow, func.count())
        .join(StepRun, StepRun.run_id == Run.id)
        .join(
            Attempt,
            and_(Attempt.run_id == StepRun.run_id, Attempt.step == StepRun.step, Attempt.number == StepRun.attempts),
        )
        .where(
            Run.finished_at >= start, Run.finished_at < end, Run.status == RunStatus.FAILED,
            StepRun.status == StepStatus.FAILED, StepRun.attempts > 1, Attempt.error_type.in_(list(transient_types)),
            _counted(Run, uncounted),
        )
        .group_by(Run.workflow)
    )
    return [(w, int(n)) for w, n in rows.all()]


async def attempt_totals(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, int, int, float]]:
    """(workflow, attempts, retries, cost) over attempts made in [start, end); a retry is attempt number > 1."""
    workflow = _workflow_of(Attempt).label("wf")
    rows = await session.execute(
        select(
            workflow,
            func.count(),
            func.coalesce(func.sum(case((Attempt.number > 1, 1), else_=0)), 0),
            func.coalesce(func.sum(Attempt.cost_usd), 0.0),
        )
        .where(Attempt.started_at >= start, Attempt.started_at < end, _counted_id(Attempt.run_id, uncounted))
        .group_by(workflow)
    )
    return [(w, int(n), int(r), float(c)) for w, n, r, c in rows.all() if w is not None]


async def decision_totals(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, str, int, int, int]]:
    """(workflow, action, decisions, sum chars_changed, sum chars_total) for decisions in [start, end)."""
    workflow = _workflow_of(Decision).label("wf")
    rows = await session.execute(
        select(
            workflow, Decision.action, func.count(),
            func.coalesce(func.sum(Decision.chars_changed), 0), func.coalesce(func.sum(Decision.chars_total), 0),
        )
        .where(Decision.decided_at >= start, Decision.decided_at < end, _counted_id(Decision.run_id, uncounted))
        .group_by(workflow, Decision.action)
    )
    return [(w, a, int(n), int(c), int(t)) for w, a, n, c, t in rows.all() if w is not None]


async def decision_waits(
    *, session: AsyncSession, start: datetime, end: datetime, actions: Sequence[str], uncounted: Sequence[str] = ()
) -> list[tuple[str, str, float]]:
    """(workflow, decided by, seconds waited) for each decision in [start, end) with one of `actions`."""
    rows = await session.execute(
        select(_workflow_of(Decision), Decision.decided_by, Decision.wait_s)
        .where(Decision.decided_at >= start, Decision.decided_at < end, Decision.action.in_(list(actions)),
               _counted_id(Decision.run_id, uncounted))
    )
    return [(w, by, float(s or 0.0)) for w, by, s in rows.all() if w is not None]


async def run_durations(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, float]]:
    """(workflow, seconds from started_at to finished_at) for runs finished in [start, end)."""
    rows = await session.execute(
        select(Run.workflow, _seconds_between(session, Run.finished_at, Run.started_at))
        .where(Run.finished_at >= start, Run.finished_at < end, Run.started_at.is_not(None), _counted(Run, uncounted))
    )
    # Rounded to the millisecond: SQLite's julianday arithmetic is only good to ~0.1 ms.
    return [(w, max(round(float(s), 3), 0.0)) for w, s in rows.all() if s is not None]


async def escalations(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, int]]:
    """(workflow, checkpoints escalated and held) recorded in [start, end)."""
    rows = await session.execute(
        select(Run.workflow, func.count())
        .select_from(Event)
        .join(Run, Run.id == Event.run_id)
        .where(Event.kind == ESCALATION_EVENT, Event.at >= start, Event.at < end, _counted(Run, uncounted))
        .group_by(Run.workflow)
    )
    return [(w, int(n)) for w, n in rows.all()]


async def reject_reasons(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """(workflow, reason as written) for each rejection with a reason in [start, end)."""
    rows = await session.execute(
        select(Run.workflow, Decision.reason)
        .select_from(Decision)
        .join(Run, Run.id == Decision.run_id)
        .where(Decision.decided_at >= start, Decision.decided_at < end, Decision.action == Action.REJECT,
               Decision.reason.is_not(None), _counted(Run, uncounted))
    )
    return [(w, r) for w, r in rows.all()]


async def run_finishes(
    *, session: AsyncSession, start: datetime, end: datetime, kind: str, uncounted: Sequence[str] = ()
) -> list[tuple[str, str, datetime, str]]:
    """(workflow, run id, when, final status) of every finish announced in [start, end), oldest first.

    Read from the outbox (`kind` is the run-finished announcement): the runs table keeps only a run's
    last finish, and a failed run that was retried and then succeeded finished twice. No index serves
    this (outbox rows are few per run); the digest runs once a day.
    """
    rows = await session.execute(
        select(Run.workflow, OutboxMessage.run_id, OutboxMessage.created_at, OutboxMessage.payload)
        .select_from(OutboxMessage)
        .join(Run, Run.id == OutboxMessage.run_id)
        .where(OutboxMessage.kind == kind, OutboxMessage.created_at >= start, OutboxMessage.created_at < end,
               _counted(Run, uncounted))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    )
    return [(w, r, at, str((p or {}).get("status"))) for w, r, at, p in rows.all()]


__all__ = [
    "ESCALATION_EVENT", "attempt_totals", "decision_totals", "decision_waits", "escalations",
    "failed_steps", "retry_exhaustions", "run_durations", "runs_finished_by_day", "runs_started",
    "runs_waiting", "reject_reasons", "run_finishes",
]
