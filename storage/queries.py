"""The queries: every function takes a session as a keyword argument and does one thing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Write
from storage.db import run_writes as _run_writes
from storage.models import Attempt, Claim, Decision, Event, OutboxMessage, Run, StepRun, utcnow
from storage.status import RUNNABLE, STARTABLE_STEP, RunStatus, StepStatus



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


# --- leases: which process drives a run ----------------------------------------------------------


async def runnable_run_ids(*, session: AsyncSession, now: datetime, limit: int) -> list[str]:
    """Runs waiting for a driver: queued, or running under an expired lease (its process died)."""
    query = (
        select(Run.id)
        .where(Run.status.in_(RUNNABLE), or_(Run.lease_expires_at.is_(None), Run.lease_expires_at < now))
        .order_by(Run.created_at)
        .limit(limit)
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list((await session.scalars(query)).all())


def fence_write(*, run_id: str, owner: str, now: datetime, **values: Any) -> Write:
    """Update a run only while `owner` holds its lease and it is still runnable (guarded): every driver
    write starts with a fence, so a process that lost its lease (or a cancelled run) changes nothing."""
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status.in_(RUNNABLE))
        .values(updated_at=now, **values)
    )
    return (stmt, {}, True)


async def renew_lease(*, session: AsyncSession, run_id: str, owner: str, now: datetime, lease_s: float) -> bool:
    """Extend our lease; False when it was lost or the run was cancelled meanwhile."""
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status.in_(RUNNABLE))
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def lease_owners(*, session: AsyncSession) -> list[str]:
    """Every process that holds (or held, until it lapses) a run's lease."""
    return list((await session.scalars(select(Run.lease_owner).where(Run.lease_owner.is_not(None)).distinct())).all())


async def release_leases(*, session: AsyncSession, owner: str) -> int:
    """Free the leases of a process known to be dead, so its runs need not wait for them to lapse."""
    result = await session.execute(
        update(Run).where(Run.lease_owner == owner).values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


# --- the driver's hot path ----------------------------------------------------------------------
# Core statements built once, with bind parameters, run on the session's connection: no ORM unit of
# work, no statement construction per call. Each step costs a few of these, so they add up.

_RUNS, _STEPS = Run.__table__, StepRun.__table__
_ATTEMPT_COLUMNS = tuple(c.key for c in Attempt.__table__.c if c.key != "id")
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
_FENCE_STEP = _fenced(current_step=bindparam("p_step"))
_FENCE_CHARGE_STEP = _fenced(**_CHARGE, current_step=bindparam("p_step"))
_FENCE_CHARGE_PARK = _fenced(**_CHARGE, **_RELEASE)
_FENCE_CHARGE_END = _fenced(**_CHARGE, **_RELEASE, finished_at=bindparam("p_now"), current_step=None)
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
    )
    .returning(_RUNS.c.workflow, _RUNS.c.inputs, _RUNS.c.spec, _RUNS.c.cost_usd)
)
_STEP_ROWS = (
    select(_STEPS.c.id, _STEPS.c.step, _STEPS.c.status, _STEPS.c.input_override, _STEPS.c.output, _STEPS.c.attempts)
    .where(_STEPS.c.run_id == bindparam("p_run"))
    .order_by(_STEPS.c.position)
)
_START_STEP = (
    update(_STEPS)
    .where(_STEPS.c.id == bindparam("p_id"), or_(*(_STEPS.c.status == s for s in STARTABLE_STEP)))
    .values(status=StepStatus.RUNNING, input=bindparam("p_input"), started_at=bindparam("p_now"), error=None)
)
_END_STEP = (
    update(_STEPS)
    .where(_STEPS.c.id == bindparam("p_id"), _STEPS.c.status == StepStatus.RUNNING)
    .values(
        status=bindparam("p_status"), output=bindparam("p_output"), finished_at=bindparam("p_now"),
        attempts=bindparam("p_attempts"), cost_usd=_STEPS.c.cost_usd + bindparam("p_cost"),
        awaiting_since=func.coalesce(bindparam("p_awaiting_since"), _STEPS.c.awaiting_since),
    )
)
_INSERT_RUN = insert(_RUNS)
_INSERT_STEPS = insert(_STEPS)
_INSERT_ATTEMPT = insert(Attempt.__table__)
_INSERT_OUTBOX = insert(OutboxMessage.__table__)


def new_run_writes(values: dict[str, Any], steps: Sequence[str]) -> list[Write]:
    """Insert a run and its pending steps (one statement for all the steps)."""
    rows = [{"run_id": values["id"], "step": step, "position": i, "status": StepStatus.PENDING} for i, step in enumerate(steps)]
    return [(_INSERT_RUN, values, False), (_INSERT_STEPS, rows, False)]


async def claim_run_returning(
    *, session: AsyncSession, run_id: str, owner: str, now: datetime, lease_s: float
) -> Row[Any] | None:
    """Take the lease of a runnable run (and mark it running) if nobody holds a live one, handing back what driving needs (workflow, inputs, spec, cost_usd), or None."""
    conn = await session.connection()
    result = await conn.execute(
        _CLAIM, {"p_run": run_id, "p_owner": owner, "p_now": now, "p_until": now + timedelta(seconds=lease_s)}
    )
    return result.first()


async def step_rows(*, session: AsyncSession, run_id: str) -> Sequence[Row[Any]]:
    """A run's steps in spec order as plain rows (id, step, status, input_override, output, attempts)."""
    conn = await session.connection()
    return (await conn.execute(_STEP_ROWS, {"p_run": run_id})).all()


def fence_step_write(*, run_id: str, owner: str, now: datetime, step: str) -> Write:
    """fence_write setting the run's current step (guarded: no row, no lease)."""
    return (_FENCE_STEP, {"p_run": run_id, "p_owner": owner, "p_now": now, "p_step": step}, True)


def fence_charge_write(
    *, run_id: str, owner: str, now: datetime, attempt: Attempt, step: str | None = None, status: str | None = None
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


def end_step_write(*, step_run_id: int, status: str, output: Any, now: datetime, attempt: Attempt) -> Write:
    """Record a running step's result: succeeded, or awaiting_approval (then awaiting since now)."""
    return (_END_STEP, {
        "p_id": step_run_id, "p_status": status, "p_output": output, "p_now": now, "p_attempts": attempt.number,
        "p_cost": attempt.cost_usd, "p_awaiting_since": now if status == StepStatus.AWAITING_APPROVAL else None,
    }, False)


def attempt_write(attempt: Attempt) -> Write:
    """Record a (transient, not added) Attempt."""
    return (_INSERT_ATTEMPT, {key: getattr(attempt, key) for key in _ATTEMPT_COLUMNS}, False)


def attempt_failed_write(*, run_id: str, step: str, attempt: Attempt) -> Write:
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


def outbox_write(messages: Sequence[tuple[str | None, str, dict[str, Any], str | None]]) -> Write:
    """Insert (run_id, kind, payload, stream) announcements in this order; a run's messages form one
    ordered stream (stream None: the run's, or the kind's for messages of no run). agents.outbox is the
    only caller: it types every payload."""
    now = utcnow()
    rows = [
        {"run_id": run_id, "stream": stream or run_id or kind, "kind": kind, "payload": payload, "created_at": now}
        for run_id, kind, payload, stream in messages
    ]
    return (_INSERT_OUTBOX, rows, False)


# --- the outbox ----------------------------------------------------------------------------------


async def pending_outbox(*, session: AsyncSession, now: datetime, limit: int = 50) -> Sequence[OutboxMessage]:
    """The oldest undelivered message of each stream (order per run), due and not claimed by a live peer."""
    head = select(func.min(OutboxMessage.id)).where(OutboxMessage.delivered_at.is_(None)).group_by(OutboxMessage.stream)
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.id.in_(head),
            or_(OutboxMessage.next_try_at.is_(None), OutboxMessage.next_try_at <= now),
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def claim_outbox(*, session: AsyncSession, message_id: int, owner: str, now: datetime, hold_s: float) -> bool:
    """Claim one message for delivery so no other replica posts it too."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.delivered_at.is_(None),
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now, OutboxMessage.claimed_by == owner),
        )
        .values(claimed_by=owner, claimed_until=now + timedelta(seconds=hold_s))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def outbox_since(*, session: AsyncSession, after_id: int, run_id: str | None = None) -> Sequence[OutboxMessage]:
    """Messages newer than after_id (the CLI prints these as they come)."""
    query = select(OutboxMessage).where(OutboxMessage.id > after_id)
    if run_id is not None:
        query = query.where(OutboxMessage.run_id == run_id)
    return (await session.scalars(query.order_by(OutboxMessage.id))).all()


async def mark_outbox_done(*, session: AsyncSession, message_ids: Sequence[int], now: datetime) -> None:
    """Mark messages delivered (the CLI, which prints rather than posts, calls this too)."""
    if message_ids:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(list(message_ids)))
            .values(delivered_at=now, claimed_by=None, claimed_until=None)
        )


# --- once-only keys and events -------------------------------------------------------------------


# PostgreSQL's INSERT ... ON CONFLICT DO NOTHING compiles to the same SQL on SQLite.
_CLAIM_ONCE = pg_insert(Claim.__table__).on_conflict_do_nothing()


def claim_write(*, key: str, owner: str) -> Write:
    """Insert a once-only key (guarded: only the first caller ever inserts a row)."""
    return (_CLAIM_ONCE, {"key": key, "owner": owner, "at": utcnow()}, True)


async def try_claim(*, session: AsyncSession, key: str, owner: str) -> bool:
    """Insert a once-only key; True if this caller is the first ever to do so."""
    return await _run_writes(session, [claim_write(key=key, owner=owner)])


def add_event(
    *, session: AsyncSession, run_id: str | None, kind: str, actor: str | None, at: datetime | None = None, **detail: Any
) -> None:
    """Keep a note of something that is not a state change (a refused click, an escalation)."""
    session.add(Event(run_id=run_id, kind=kind, actor=actor, detail=detail, at=at or utcnow()))


async def last_claim_key(*, session: AsyncSession, prefix: str) -> str | None:
    """The greatest claim key starting with `prefix` (a range scan on the primary key), or None."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return await session.scalar(select(func.max(Claim.key)).where(Claim.key >= prefix, Claim.key < upper))


async def claim_exists(*, session: AsyncSession, key: str) -> bool:
    """True when someone already holds this once-only key."""
    return await session.get(Claim, key) is not None


async def awaiting_checkpoints(*, session: AsyncSession) -> Sequence[tuple[StepRun, Run]]:
    """Every checkpoint still waiting for a human, with its run."""
    rows = await session.execute(
        select(StepRun, Run)
        .join(Run, Run.id == StepRun.run_id)
        .where(and_(StepRun.status == StepStatus.AWAITING_APPROVAL, Run.status == RunStatus.AWAITING_APPROVAL))
        .order_by(StepRun.awaiting_since)
    )
    return [(s, r) for s, r in rows.all()]


# --- chat side ---

from storage.models import ChatMessage  # noqa: E402 - the chat side's own rows


async def get_chat_message(*, session: AsyncSession, run_id: str | None, key: str) -> ChatMessage | None:
    """A message the chat side posted for a run, by key ("parent", "checkpoint:<step>", ...)."""
    return await session.scalar(select(ChatMessage).where(ChatMessage.run_id == run_id, ChatMessage.key == key))


async def put_chat_message(
    *, session: AsyncSession, run_id: str | None, key: str, channel: str, ts: str, outbox_id: int | None = None
) -> None:
    """Remember (or move) the message posted for (run, key), and the announcement it was posted for."""
    found = await get_chat_message(session=session, run_id=run_id, key=key)
    if found is None:
        session.add(ChatMessage(run_id=run_id, key=key, channel=channel, ts=ts, created_at=utcnow(), outbox_id=outbox_id))
    else:
        found.channel, found.ts = channel, ts


async def latest_chat_message(*, session: AsyncSession, run_id: str, prefix: str) -> ChatMessage | None:
    """The newest message of a run whose key starts with `prefix` (e.g. its last failure report)."""
    return await session.scalar(
        select(ChatMessage)
        .where(ChatMessage.run_id == run_id, ChatMessage.key.startswith(prefix, autoescape=True))
        .order_by(ChatMessage.id.desc())
        .limit(1)
    )


async def set_run_message(*, session: AsyncSession, run_id: str, channel: str, ts: str) -> None:
    """Record where a run's parent message lives."""
    await session.execute(
        update(Run).where(Run.id == run_id).values(channel=channel, message_ts=ts).execution_options(synchronize_session=False)
    )


async def outbox_followers(*, session: AsyncSession, stream: str, after_id: int, limit: int = 50) -> Sequence[OutboxMessage]:
    """The undelivered messages that follow `after_id` in one stream, in order."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.stream == stream, OutboxMessage.id > after_id, OutboxMessage.delivered_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def retry_outbox_later(
    *, session: AsyncSession, message_id: int, owner: str, next_try_at: datetime, error: str
) -> None:
    """A delivery failed for a passing reason: count the try, note why, release the claim until next_try_at."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == owner)
        .values(tries=OutboxMessage.tries + 1, last_error=error[:2000], next_try_at=next_try_at, claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


async def release_outbox(*, session: AsyncSession, message_id: int, owner: str) -> None:
    """Give a claimed message back untouched (a clean shutdown mid-delivery)."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == owner, OutboxMessage.delivered_at.is_(None))
        .values(claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


async def finish_outbox(*, session: AsyncSession, message_id: int, now: datetime, error: str | None = None) -> None:
    """Delivered (or given up for good): counts the try and keeps the error, if any, in last_error."""
    values: dict[str, Any] = {"delivered_at": now, "claimed_by": None, "claimed_until": None, "tries": OutboxMessage.tries + 1}
    if error is not None:
        values["last_error"] = error[:2000]
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values).execution_options(synchronize_session=False)
    )


async def events(*, session: AsyncSession, run_id: str | None = None, kind: str | None = None) -> Sequence[Event]:
    """Recorded events, oldest first."""
    query = select(Event)
    if run_id is not None:
        query = query.where(Event.run_id == run_id)
    if kind is not None:
        query = query.where(Event.kind == kind)
    return (await session.scalars(query.order_by(Event.id))).all()
