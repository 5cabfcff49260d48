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

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Numeric, String, and_, case, cast, extract, func, literal, select, true, tuple_, union_all
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from storage.models import Attempt, CheckpointVersion, Decision, Event, OutboxMessage, Run, StepRun
from storage.status import Action, RunStatus, StepStatus

ESCALATION_EVENT = "checkpoint_escalated"


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name


def _seconds_between(session: AsyncSession, later: Any, earlier: Any) -> ColumnElement[float]:
    """later - earlier in seconds, computed by the database."""
    if _dialect(session) == "sqlite":
        return cast((func.julianday(later) - func.julianday(earlier)) * 86400.0, Float)
    return cast(extract("epoch", later - earlier), Float)


async def _execute(session: AsyncSession, statement: Any) -> Any:
    """Run a SELECT on the session's connection: plain rows, without the ORM's result processing (a
    tenth of the digest's time on the durations alone)."""
    return await (await session.connection()).execute(statement)


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


def _distinct(model: Any, name: str) -> Any:
    """A CTE of the distinct workflows of `model`'s table (column x), by a loose index scan of an index
    that leads with the workflow: one seek per workflow, where SELECT DISTINCT would read every entry."""
    w = select(func.min(model.workflow).label("x")).cte(name, recursive=True)
    nxt = aliased(model)
    return w.union_all(select(select(func.min(nxt.workflow)).where(nxt.workflow > w.c.x).scalar_subquery()).where(w.c.x.is_not(None)))


def _constants(values: Sequence[str], name: str) -> Any:
    """A CTE of string constants (column s), one row each."""
    return union_all(*(select(literal(v, String).label("s")) for v in values)).cte(name)


def _workflow_of(row: Any) -> ColumnElement[str]:
    """An attempt's or a decision's workflow: its own copy, else its run's."""
    return func.coalesce(row.workflow, select(Run.workflow).where(Run.id == row.run_id).scalar_subquery())


async def runs_started(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, int]]:
    """(workflow, runs created in [start, end))."""
    rows = await _execute(session, 
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
    w = _distinct(Run, "w")
    st = _constants(statuses, "st")
    r = aliased(Run)
    counts = [
        select(func.count()).select_from(r)
        .where(r.workflow == w.c.x, r.status == st.c.s, r.finished_at >= end - (k + 1) * day, r.finished_at < end - k * day)
        .scalar_subquery()
        for k in range(buckets)
    ]
    rows = await _execute(session, select(w.c.x, st.c.s, *counts).select_from(w).join(st, true()).where(w.c.x.is_not(None)))
    found: dict[tuple[str, str, int], int] = {}
    for wf, status, *per_day in rows.all():
        for k, n in enumerate(per_day):
            if n:
                found[(wf, status, k)] = int(n)
    if uncounted:
        for wf, status, finished in await _execute(session, 
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
    for (wf,) in await _execute(
        session, select(Run.workflow).where(Run.status == RunStatus.AWAITING_APPROVAL, _counted(Run, uncounted))
    ):
        counts[wf] = counts.get(wf, 0) + 1
    return sorted(counts.items())


async def failed_steps(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, str, int]]:
    """(workflow, step, failures) for runs that finished failed in [start, end), by the step that failed."""
    rows = await _execute(session, 
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
    rows = await _execute(session, 
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
    """(workflow, attempts, retries, cost) over attempts made in [start, end); a retry is attempt number > 1.

    Per workflow (a loose scan of ix_attempts_digest), three aggregates over its range of the index: no
    GROUP BY sort of every attempt. Attempts without their workflow copied, and those of uncounted runs
    (few of either), are added and taken off by a plain GROUP BY.
    """
    w = _distinct(Attempt, "w")
    a = aliased(Attempt)

    def over(value: Any) -> Any:
        return (select(value).select_from(a)
                .where(a.workflow == w.c.x, a.started_at >= start, a.started_at < end).scalar_subquery())

    totals: dict[str, list[float]] = {}
    rows = await _execute(session, 
        select(w.c.x, over(func.count()), over(func.sum(case((a.number > 1, 1), else_=0))), over(func.sum(a.cost_usd)))
        .where(w.c.x.is_not(None))
    )
    for wf, n, retries, cost in rows.all():
        if n:
            totals[wf] = [int(n), int(retries or 0), float(cost or 0.0)]
    in_window = and_(Attempt.started_at >= start, Attempt.started_at < end)
    fixes = [(1, and_(Attempt.workflow.is_(None), in_window, _counted_id(Attempt.run_id, uncounted)))]
    if uncounted:
        fixes.append((-1, and_(Attempt.workflow.is_not(None), in_window, Attempt.run_id.in_(_uncounted_runs(Run.id, uncounted=uncounted)))))
    for sign, where in fixes:
        workflow = _workflow_of(Attempt).label("wf")
        for wf, n, retries, cost in await _execute(session, 
            select(workflow, func.count(), func.sum(case((Attempt.number > 1, 1), else_=0)), func.sum(Attempt.cost_usd))
            .where(where).group_by(workflow)
        ):
            if wf is not None:
                t = totals.setdefault(wf, [0, 0, 0.0])
                t[0] += sign * int(n)
                t[1] += sign * int(retries or 0)
                t[2] += sign * float(cost or 0.0)
    return [(wf, int(n), int(r), c) for wf, (n, r, c) in totals.items() if n]


async def decision_counts(
    *, session: AsyncSession, start: datetime, end: datetime, actions: Sequence[str], uncounted: Sequence[str] = ()
) -> list[tuple[str, str, int]]:
    """(workflow, action, decisions) for decisions in [start, end) with one of `actions`: a count per
    (workflow, action) over one range of ix_decisions_workflow_action, as attempt_totals does."""
    w = _distinct(Decision, "w")
    acts = _constants(actions, "acts")
    d = aliased(Decision)
    count = (select(func.count()).select_from(d)
             .where(d.workflow == w.c.x, d.action == acts.c.s, d.decided_at >= start, d.decided_at < end).scalar_subquery())
    counts: dict[tuple[str, str], int] = {}
    for wf, action, n in await _execute(session, select(w.c.x, acts.c.s, count).select_from(w).join(acts, true()).where(w.c.x.is_not(None))):
        if n:
            counts[(wf, action)] = int(n)
    in_window = and_(Decision.decided_at >= start, Decision.decided_at < end, Decision.action.in_(list(actions)))
    fixes = [(1, and_(Decision.workflow.is_(None), in_window, _counted_id(Decision.run_id, uncounted)))]
    if uncounted:
        fixes.append((-1, and_(Decision.workflow.is_not(None), in_window, Decision.run_id.in_(_uncounted_runs(Run.id, uncounted=uncounted)))))
    for sign, where in fixes:
        workflow = _workflow_of(Decision).label("wf")
        for wf, action, n in await _execute(session, 
            select(workflow, Decision.action, func.count()).where(where).group_by(workflow, Decision.action)
        ):
            if wf is not None:
                counts[(wf, action)] = counts.get((wf, action), 0) + sign * int(n)
    return [(wf, action, n) for (wf, action), n in counts.items() if n]


async def decision_totals(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, str, int, int, int]]:
    """(workflow, action, decisions, sum chars_changed, sum chars_total) for decisions in [start, end)."""
    workflow = _workflow_of(Decision).label("wf")
    rows = await _execute(session, 
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
    rows = await _execute(session, 
        select(_workflow_of(Decision), Decision.decided_by, Decision.wait_s)
        .where(Decision.decided_at >= start, Decision.decided_at < end, Decision.action.in_(list(actions)),
               _counted_id(Decision.run_id, uncounted))
    )
    return [(w, by, float(s or 0.0)) for w, by, s in rows.all() if w is not None]


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks (as percentile_cont); None for no values."""
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


async def duration_percentiles(
    *, session: AsyncSession, start: datetime, end: datetime, quantiles: Sequence[float], uncounted: Sequence[str] = ()
) -> dict[str | None, list[float | None]]:
    """{workflow, or None for all: the quantiles of the durations (started_at to finished_at, to the ms)
    of runs finished in [start, end)}.

    PostgreSQL computes them (percentile_cont, per workflow and over all in one GROUPING SETS). SQLite has
    no percentile function (its window functions take five times as long as reading the durations off
    ix_runs_finished_at): the durations come back and are sorted here."""
    raw = _seconds_between(session, Run.finished_at, Run.started_at)
    if _dialect(session) != "sqlite":
        raw = cast(func.round(cast(raw, Numeric), 3), Float)  # PostgreSQL rounds numeric, not double precision
    else:
        raw = func.round(raw, 3)
    seconds = case((raw < 0, 0.0), else_=raw)
    where = (Run.finished_at >= start, Run.finished_at < end, Run.started_at.is_not(None), _counted(Run, uncounted))
    if _dialect(session) == "sqlite":
        groups: dict[str | None, list[float]] = {}
        for wf, s in await _execute(session, select(Run.workflow, seconds).where(*where)):
            groups.setdefault(wf, []).append(float(s))
        if groups:
            groups[None] = [v for values in groups.values() for v in values]
        return {wf: [percentile(sorted(values), q) for q in quantiles] for wf, values in groups.items()}
    d = select(Run.workflow.label("wf"), seconds.label("s")).where(*where).subquery("d")
    rows = await _execute(session, select(
        d.c.wf, func.grouping(d.c.wf),
        func.percentile_cont(postgresql.array(list(quantiles)), type_=postgresql.ARRAY(Float)).within_group(d.c.s),
    ).group_by(func.grouping_sets(tuple_(d.c.wf), tuple_())))
    return {  # no run at all still gives the () grouping its row, of NULLs
        None if everything else wf: [float(v) for v in values] for wf, everything, values in rows.all() if values is not None
    }


async def escalations(
    *, session: AsyncSession, start: datetime, end: datetime, uncounted: Sequence[str] = ()
) -> list[tuple[str, int]]:
    """(workflow, checkpoints escalated and held) recorded in [start, end)."""
    rows = await _execute(session, 
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
    rows = await _execute(session, 
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
    rows = await _execute(session, 
        select(Run.workflow, OutboxMessage.run_id, OutboxMessage.created_at, OutboxMessage.payload)
        .select_from(OutboxMessage)
        .join(Run, Run.id == OutboxMessage.run_id)
        .where(OutboxMessage.kind == kind, OutboxMessage.created_at >= start, OutboxMessage.created_at < end,
               _counted(Run, uncounted))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    )
    return [(w, r, at, str((p or {}).get("status"))) for w, r, at, p in rows.all()]


async def revisions_per_checkpoint(*, session: AsyncSession, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
    """(workflow, checkpoint step, versions sent back with a note in [start, end)). No index on outcome:
    checkpoint_versions holds a few rows per decided checkpoint, found through ix_checkpoint_versions_at."""
    rows = await session.execute(
        select(Run.workflow, CheckpointVersion.step, func.count())
        .select_from(CheckpointVersion)
        .join(Run, Run.id == CheckpointVersion.run_id)
        .where(CheckpointVersion.at >= start, CheckpointVersion.at < end, CheckpointVersion.outcome == "revised")
        .group_by(Run.workflow, CheckpointVersion.step)
    )
    return [(w, s, int(n)) for w, s, n in rows.all()]


__all__ = [
    "ESCALATION_EVENT", "attempt_totals", "decision_counts", "decision_totals", "decision_waits", "escalations",
    "duration_percentiles", "failed_steps", "percentile", "retry_exhaustions", "runs_finished_by_day", "runs_started",
    "runs_waiting", "reject_reasons", "run_finishes", "revisions_per_checkpoint",
]
