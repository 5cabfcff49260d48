"""Checkpoint deadlines: remind the approvers, then escalate and expire (or hold) a checkpoint nobody answers.

Each action happens once across any number of checkers (replicas): the reminder and the escalation are
conditional UPDATEs (`... WHERE reminded_at IS NULL`, `... WHERE escalated_at IS NULL`) written in the
same transaction as their announcement, so whoever loses the race writes nothing. Expiry goes through
agents.checkpoints.decide(action="expire"), which is exactly-once on its own.

Order at the timeout: (1) escalate (mark escalated_at + announce CHECKPOINT_ESCALATED, and for
`on_timeout: hold` an Event "checkpoint_escalated"), then (2) for `on_timeout: reject` expire the run.
A crash between (1) and (2) is repaired by the next check: escalated_at is set, so (1) is skipped and
(2) runs. A reminder that comes due together with the timeout (after downtime) is skipped: the
escalation says more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
import structlog

from agents import outbox
from agents.checkpoints import decide
from agents.errors import AlreadyDecided, InvalidState, UnknownRun
from agents.spec import CheckpointSpec, WorkflowSpec
from storage import run_queries
from storage.db import Database, run_writes
from storage.status import Action

log = structlog.get_logger("overseer.deadlines")

ESCALATION_EVENT = "checkpoint_escalated"
DEADLINE_ACTOR = "deadline"


@dataclass(frozen=True)
class _Waiting:
    run_id: str
    workflow: str
    step: str
    step_run_id: int
    since: datetime
    reminded: bool
    escalated: bool
    checkpoint: CheckpointSpec
    approvers: tuple[str, ...]


async def _waiting(db: Database) -> list[_Waiting]:
    found: list[_Waiting] = []
    async with db.sessions() as session:
        for step_run, run in await run_queries.awaiting_checkpoints(session=session):
            if step_run.awaiting_since is None:
                continue
            try:
                spec = WorkflowSpec.model_validate(run.spec)
                checkpoint = spec.step(step_run.step).checkpoint
            except (ValueError, KeyError):
                log.warning("deadline.bad_spec", run_id=run.id, step=step_run.step)
                continue
            if checkpoint is None or (checkpoint.timeout is None and checkpoint.remind_after is None):
                continue
            found.append(_Waiting(
                run.id, run.workflow, step_run.step, step_run.id, step_run.awaiting_since,
                step_run.reminded_at is not None, step_run.escalated_at is not None, checkpoint, spec.approvers,
            ))
    return found


async def check_deadlines(db: Database, *, now: datetime) -> list[str]:
    """Remind, escalate and expire checkpoints whose deadlines have passed; returns what was done."""
    done: list[str] = []
    for w in await _waiting(db):
        cp = w.checkpoint
        where = f"{w.run_id}/{w.step}"
        if cp.timeout is not None and now >= w.since + timedelta(seconds=cp.timeout):
            if not w.escalated and await _escalate(db, w, now):
                done.append(f"escalated {where} ({cp.on_timeout})")
            if cp.on_timeout == "reject":
                try:
                    await decide(
                        db, w.run_id, w.step, action=Action.EXPIRE, by=DEADLINE_ACTOR, now=now,
                        reason=f"no decision within {_human(cp.timeout)}",
                    )
                except (AlreadyDecided, InvalidState, UnknownRun):
                    continue  # decided (or cancelled) by someone else just now
                done.append(f"expired {where}")
        elif (
            cp.remind_after is not None and not w.reminded
            and now >= w.since + timedelta(seconds=cp.remind_after)
            and await _remind(db, w, now)
        ):
            done.append(f"reminded {where}")
    return done


async def _remind(db: Database, w: _Waiting, now: datetime) -> bool:
    reminder = outbox.CheckpointReminder(
        step=w.step, mention=list(w.approvers), waiting_s=(now - w.since).total_seconds(), timeout_s=w.checkpoint.timeout,
    )
    async with db.sessions.begin() as session:
        won = await run_writes(session, [
            run_queries.mark_waiting_once_write(step_run_id=w.step_run_id, column="reminded_at", now=now),
            outbox.message(w.run_id, reminder),
        ])
    if won:
        log.info("checkpoint.reminded", run_id=w.run_id, step=w.step)
    return won


async def _escalate(db: Database, w: _Waiting, now: datetime) -> bool:
    cp = w.checkpoint
    escalated = outbox.CheckpointEscalated(
        step=w.step, mention=list(cp.escalate_to), approvers=list(w.approvers), on_timeout=cp.on_timeout,
        waiting_s=(now - w.since).total_seconds(),
    )
    async with db.sessions.begin() as session:
        won = await run_writes(session, [
            run_queries.mark_waiting_once_write(step_run_id=w.step_run_id, column="escalated_at", now=now),
            outbox.message(w.run_id, escalated),
        ])
        if won and cp.on_timeout == "hold":
            run_queries.add_event(
                session=session, run_id=w.run_id, kind=ESCALATION_EVENT, actor=DEADLINE_ACTOR, at=now,
                step=w.step, workflow=w.workflow, escalate_to=list(cp.escalate_to), on_timeout=cp.on_timeout,
            )
    if won:
        log.info("checkpoint.escalated", run_id=w.run_id, step=w.step, on_timeout=cp.on_timeout)
    return won


def _human(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
