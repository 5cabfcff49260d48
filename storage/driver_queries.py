"""What a run's driver reads and writes: leases (which process drives a run) and the hot path."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from dataclasses import dataclass, fields

from sqlalchemy import Connection, Row, and_, bindparam, case, func, insert, null, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Write
from storage.writer import prepared
from storage.models import Attempt, Run, StepRun
from storage.status import RUNNABLE, STARTABLE_STEP, AttemptStatus, RunStatus, StepStatus


def runnable_run_ids(conn: Connection, *, now: datetime, limit: int) -> list[str]:
    """Runs waiting for a driver: queued, or running under an expired lease (its process died)."""
    query = (
        select(Run.id)
        .where(Run.status.in_(RUNNABLE), or_(Run.lease_expires_at.is_(None), Run.lease_expires_at < now))
        .order_by(Run.created_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.scalars(query).all())


def fence_write(*, run_id: str, owner: str, now: datetime, **values: Any) -> Write:
    """Update a run only while `owner` holds its lease and it is still runnable (guarded): every driver
    write starts with a fence, so a process that lost its lease (or a cancelled run) changes nothing."""
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status.in_(RUNNABLE))
        .values(updated_at=now, **values)
    )
    return (stmt, {}, True)


def renew_lease(conn: Connection, *, run_id: str, owner: str, now: datetime, lease_s: float) -> bool:
    """Extend our lease; False when it was lost or the run was cancelled meanwhile."""
    result = conn.execute(_RENEW, {"p_run": run_id, "p_owner": owner, "p_until": now + timedelta(seconds=lease_s)})
    return result.rowcount == 1


async def lease_owners(*, session: AsyncSession) -> list[str]:
    """Every process that holds (or held, until it lapses) a run's lease."""
    return list((await session.scalars(select(Run.lease_owner).where(Run.lease_owner.is_not(None)).distinct())).all())


def hand_back(conn: Connection, *, run_id: str, owner: str) -> bool:
    """A driver stopping on purpose gives a running run back (queued, no lease): no crash to count."""
    result = conn.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.RUNNING)
        .values(status=RunStatus.QUEUED, lease_owner=None, lease_expires_at=None)
    )
    return result.rowcount == 1


def hand_back_all(conn: Connection, *, owner: str) -> int:
    """A process stopping on purpose gives back every run it drives (running ones queued again: no crash
    to count), so they go on elsewhere at once. How many."""
    result = conn.execute(
        update(Run).where(Run.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None,
                status=case((Run.status == RunStatus.RUNNING, RunStatus.QUEUED), else_=Run.status))
    )
    return result.rowcount or 0


async def release_leases(*, session: AsyncSession, owner: str) -> int:
    """Free the leases of a process known to be dead, so its runs need not wait for them to lapse (taking
    one over then counts as a crash)."""
    result = await session.execute(
        update(Run).where(Run.lease_owner == owner).values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


# --- the hot path ------------------------------------------------------------------------------
# Core statements built once, with bind parameters, run on the session's connection: no ORM unit of
# work, no statement construction per call. Each step costs a few of these, so they add up.
_RUNS, _STEPS = Run.__table__, StepRun.__table__


@dataclass(frozen=True, slots=True)
class AttemptValues:
    """One attempt as plain values (the attempts table's columns but its id): written by Core
    statements, never through an ORM object on the hot path."""

    run_id: str
    step: str
    number: int
    model: str | None
    fallback_index: int
    model_attempt: int
    input: Any
    started_at: datetime
    status: str = AttemptStatus.STARTED
    model_used: str | None = None
    raw_output: str | None = None
    parsed_output: Any = None
    error_type: str | None = None
    error_message: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    backoff_s: float | None = None
    workflow: str | None = None  # the run's, copied so the digest groups attempts without a join


_ATTEMPT_COLUMNS = tuple(f.name for f in fields(AttemptValues))
# What the end of an attempt fills in (the rest was recorded at its start).
_FINISH_COLUMNS = (
    "status", "model_used", "raw_output", "parsed_output", "error_type", "error_message", "tokens_in", "tokens_out",
    "cost_usd", "latency_ms",
)

# Plain comparisons rather than IN (...): an IN list is re-expanded on every execution.
_RUNNABLE = or_(*(_RUNS.c.status == status for status in RUNNABLE))


def _fenced(**values: Any) -> Any:
    """UPDATE runs SET values WHERE this owner holds the lease and the run is runnable (see fence_write)."""
    return (
        update(_RUNS)
        .where(_RUNS.c.id == bindparam("p_run"), _RUNS.c.lease_owner == bindparam("p_owner"), _RUNNABLE)
        .values(updated_at=bindparam("p_now"), **values)
    )

_CHARGE = {
    "tokens_in": _RUNS.c.tokens_in + bindparam("p_tokens_in"),
    "tokens_out": _RUNS.c.tokens_out + bindparam("p_tokens_out"),
    "cost_usd": _RUNS.c.cost_usd + bindparam("p_cost"),
}

_RELEASE = {"status": bindparam("p_status"), "lease_owner": None, "lease_expires_at": None}

_FENCE_STEP = prepared(_fenced(current_step=bindparam("p_step")))

_FENCE_CHARGE_STEP = prepared(_fenced(**_CHARGE, current_step=bindparam("p_step")))

_FENCE_CHARGE_PARK = prepared(_fenced(**_CHARGE, **_RELEASE))

_FENCE_CHARGE_END = prepared(_fenced(**_CHARGE, **_RELEASE, finished_at=bindparam("p_now"), current_step=None))

_CLAIM = (
    update(_RUNS)
    .where(
        _RUNS.c.id == bindparam("p_run"), _RUNNABLE,
        or_(_RUNS.c.lease_owner.is_(None), _RUNS.c.lease_owner == bindparam("p_owner"),
            _RUNS.c.lease_expires_at < bindparam("p_now")),
    )
    .values(
        lease_owner=bindparam("p_owner"), lease_expires_at=bindparam("p_until"), status=RunStatus.RUNNING,
        started_at=func.coalesce(_RUNS.c.started_at, bindparam("p_now")), updated_at=bindparam("p_now"),
        # Taking over a run another driver left running: that driver died with the run in its hands.
        crashes=_RUNS.c.crashes + case(
            (and_(_RUNS.c.status == RunStatus.RUNNING,
                  or_(_RUNS.c.lease_owner.is_(None), _RUNS.c.lease_owner != bindparam("p_owner"))), 1),
            else_=0,
        ),
    )
    .returning(_RUNS.c.workflow, _RUNS.c.inputs, _RUNS.c.spec, _RUNS.c.cost_usd, _RUNS.c.crashes, _RUNS.c.current_step,
               _RUNS.c.mocked)
)

_RENEW = prepared(
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("p_run"), _RUNS.c.lease_owner == bindparam("p_owner"), _RUNNABLE)
    .values(lease_expires_at=bindparam("p_until"))
)

_STEP_ROWS = (
    select(_STEPS.c.id, _STEPS.c.step, _STEPS.c.status, _STEPS.c.input_override, _STEPS.c.output, _STEPS.c.attempts,
           _STEPS.c.retry_base)
    .where(_STEPS.c.run_id == bindparam("p_run"))
    .order_by(_STEPS.c.position)
)

_START_STEP = prepared(
    update(_STEPS)
    .where(_STEPS.c.id == bindparam("p_id"), or_(*(_STEPS.c.status == s for s in STARTABLE_STEP)))
    .values(status=StepStatus.RUNNING, input=bindparam("p_input"), started_at=bindparam("p_now"), error=None)
)

_END_STEP = prepared(
    update(_STEPS)
    .where(_STEPS.c.id == bindparam("p_id"), _STEPS.c.status == StepStatus.RUNNING)
    .values(
        status=bindparam("p_status"), output=bindparam("p_output"), finished_at=bindparam("p_now"),
        attempts=bindparam("p_attempts"), cost_usd=_STEPS.c.cost_usd + bindparam("p_cost"),
        awaiting_since=func.coalesce(bindparam("p_awaiting_since"), _STEPS.c.awaiting_since),
        due_at=null(),  # a checkpoint that waits (again) is dated afresh by the deadline scan
    )
)

_INSERT_RUN = prepared(insert(_RUNS))

_INSERT_STEPS = prepared(insert(_STEPS))

_INSERT_ATTEMPT = prepared(insert(Attempt.__table__))


def new_run_writes(values: dict[str, Any], steps: Sequence[str]) -> list[Write]:
    """Insert a run and its pending steps (one statement for all the steps)."""
    rows = [{"run_id": values["id"], "step": step, "position": i, "status": StepStatus.PENDING} for i, step in enumerate(steps)]
    return [(_INSERT_RUN, values, False), (_INSERT_STEPS, rows, False)]


def claim_run_returning(conn: Connection, *, run_id: str, owner: str, now: datetime, lease_s: float) -> Row[Any] | None:
    """Take the lease of a runnable run (and mark it running) if nobody holds a live one, handing back what driving needs (workflow, inputs, spec, cost_usd, mocked), or None."""
    result = conn.execute(_CLAIM, {"p_run": run_id, "p_owner": owner, "p_now": now, "p_until": now + timedelta(seconds=lease_s)})
    return result.first()


def step_rows(conn: Connection, *, run_id: str) -> Sequence[Row[Any]]:
    """A run's steps in spec order as plain rows (id, step, status, input_override, output, attempts)."""
    return conn.execute(_STEP_ROWS, {"p_run": run_id}).all()


def fence_step_write(*, run_id: str, owner: str, now: datetime, step: str) -> Write:
    """fence_write setting the run's current step (guarded: no row, no lease)."""
    return (_FENCE_STEP, {"p_run": run_id, "p_owner": owner, "p_now": now, "p_step": step}, True)


def fence_charge_write(
    *, run_id: str, owner: str, now: datetime, attempt: AttemptValues, step: str | None = None, status: str | None = None
) -> Write:
    """fence_write adding an attempt's tokens and cost to the run, and then either moving it on to `step`,
    or (with `status`) parking it (awaiting_approval) or ending it: both give the lease up."""
    params = {
        "p_run": run_id, "p_owner": owner, "p_now": now, "p_tokens_in": attempt.tokens_in,
        "p_tokens_out": attempt.tokens_out, "p_cost": attempt.cost_usd, "p_step": step, "p_status": status,
    }
    if status is None:
        return (_FENCE_CHARGE_STEP, params, True)
    return (_FENCE_CHARGE_PARK if status == RunStatus.AWAITING_APPROVAL else _FENCE_CHARGE_END, params, True)


def start_step_write(*, step_run_id: int, call_input: Any, now: datetime) -> Write:
    """Mark a pending (or interrupted) step running with the input it is called with."""
    return (_START_STEP, {"p_id": step_run_id, "p_input": call_input, "p_now": now}, False)


def end_step_write(*, step_run_id: int, status: str, output: Any, now: datetime, attempt: AttemptValues) -> Write:
    """Record a running step's result: succeeded, or awaiting_approval (then awaiting since now)."""
    return (_END_STEP, {
        "p_id": step_run_id, "p_status": status, "p_output": output, "p_now": now, "p_attempts": attempt.number,
        "p_cost": attempt.cost_usd, "p_awaiting_since": now if status == StepStatus.AWAITING_APPROVAL else None,
    }, False)


def attempt_start_write(attempt: AttemptValues) -> Write:
    """Record an attempt as started, before its call: a crash during the call leaves it on record."""
    values = {key: getattr(attempt, key) for key in _ATTEMPT_COLUMNS}
    return (_INSERT_ATTEMPT, values | {"status": AttemptStatus.STARTED}, False)


_END_ATTEMPT = prepared(
    update(Attempt.__table__)
    .where(
        Attempt.__table__.c.run_id == bindparam("p_run"), Attempt.__table__.c.step == bindparam("p_step"),
        Attempt.__table__.c.number == bindparam("p_number"),
    )
    .values({key: bindparam(f"v_{key}") for key in _FINISH_COLUMNS})
)


def attempt_end_write(attempt: AttemptValues) -> Write:
    """Record how a started attempt ended (its outcome, output, tokens, cost and latency)."""
    values = {f"v_{key}": getattr(attempt, key) for key in _FINISH_COLUMNS}
    return (_END_ATTEMPT, {"p_run": attempt.run_id, "p_step": attempt.step, "p_number": attempt.number, **values}, False)


def attempt_failed_write(*, run_id: str, step: str, attempt: AttemptValues) -> Write:
    """Count a failed attempt on its step: the attempts so far and their cost."""
    stmt = (
        update(StepRun)
        .where(StepRun.run_id == run_id, StepRun.step == step)
        .values(attempts=attempt.number, cost_usd=StepRun.cost_usd + attempt.cost_usd)
    )
    return (stmt, {}, False)


def backoff_write(*, run_id: str, step: str, number: int, delay_s: float) -> Write:
    """Record the wait that followed an attempt."""
    stmt = update(Attempt).where(Attempt.run_id == run_id, Attempt.step == step, Attempt.number == number).values(backoff_s=delay_s)
    return (stmt, {}, False)


_INTERRUPT = (
    update(Attempt.__table__)
    .where(Attempt.__table__.c.run_id == bindparam("p_run"), Attempt.__table__.c.status == AttemptStatus.STARTED)
    .values(status=AttemptStatus.INTERRUPTED, error_type="Interrupted",
            error_message="the process driving the run stopped during this attempt")
    .returning(Attempt.__table__.c.step, Attempt.__table__.c.number, Attempt.__table__.c.model, Attempt.__table__.c.input)
)


def interrupt_started(conn: Connection, *, run_id: str) -> Sequence[Row[Any]]:
    """Mark the run's attempts that were started and never ended as interrupted: (step, number, model, input)."""
    return conn.execute(_INTERRUPT, {"p_run": run_id}).all()


def interrupted_writes(*, run_id: str, step: str, number: int, cost_usd: float) -> list[Write]:
    """An interrupted attempt counted on its step, with its estimated cost on the attempt and the step
    (the run itself is charged by the driver's fence)."""
    on_step = (
        update(StepRun)
        .where(StepRun.run_id == run_id, StepRun.step == step)
        .values(attempts=case((StepRun.attempts < number, number), else_=StepRun.attempts),
                cost_usd=StepRun.cost_usd + cost_usd)
    )
    on_attempt = (
        update(Attempt)
        .where(Attempt.run_id == run_id, Attempt.step == step, Attempt.number == number)
        .values(cost_usd=cost_usd)
    )
    return [(on_step, {}, False), (on_attempt, {}, False)]


def attempts_per_target(conn: Connection, *, run_id: str, step: str, after: int) -> dict[int, int]:
    """How many attempts each target (fallback index) of a step has made since attempt `after`."""
    rows = conn.execute(
        select(Attempt.fallback_index, func.count())
        .where(Attempt.run_id == run_id, Attempt.step == step, Attempt.number > after)
        .group_by(Attempt.fallback_index)
    )
    return {index: count for index, count in rows.all()}


_TRIED = select(*(c for c in Attempt.__table__.c)).where(
    Attempt.__table__.c.run_id == bindparam("p_run"), Attempt.__table__.c.step == bindparam("p_step"),
).order_by(Attempt.__table__.c.id)


def step_attempts(conn: Connection, *, run_id: str, step: str) -> Sequence[Row[Any]]:
    """A step's attempts in order, as plain rows with the attempts table's columns."""
    return conn.execute(_TRIED, {"p_run": run_id, "p_step": step}).all()


def fail_step_write(*, step_run_id: int, call_input: Any, error: str, now: datetime) -> Write:
    """Mark a pending, interrupted or running step failed, with the input it was called with."""
    stmt = (
        update(_STEPS)
        .where(_STEPS.c.id == step_run_id, _STEPS.c.status.in_(STARTABLE_STEP))
        .values(status=StepStatus.FAILED, input=call_input, error=error, finished_at=now)
    )
    return (stmt, {}, False)


_STATUS = select(_RUNS.c.status).where(_RUNS.c.id == bindparam("p_run"))


def run_status(conn: Connection, *, run_id: str) -> str | None:
    """A run's status, or None when there is no such run."""
    return conn.execute(_STATUS, {"p_run": run_id}).scalar()
