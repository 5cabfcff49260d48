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

Cost: each check reads only the checkpoints posted since the last one (to date them) and those whose next
deadline has come (step_runs.due_at, indexed with the status; storage/deadline_queries.py), whatever the
number waiting. Whoever changes a waiting checkpoint's deadlines (awaiting_since, reminded_at,
escalated_at) sets due_at back to NULL, and the next check dates it again.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog

from agents import outbox
from agents.checkpoints import decide
from agents.errors import AlreadyDecided, InvalidState, UnknownRun
from agents.spec import CheckpointSpec, WorkflowSpec
from storage import deadline_queries, run_queries
from storage.db import Database, run_writes
from storage.status import Action

log = structlog.get_logger("overseer.deadlines")

ESCALATION_EVENT = "checkpoint_escalated"
DEADLINE_ACTOR = "deadline"
NEVER = datetime(9999, 12, 31, tzinfo=timezone.utc)  # the due time of a checkpoint with nothing left to do
BATCH = 200  # checkpoints dated at a time, and due ones handled per check


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

    def next_due(self) -> datetime:
        """When this checkpoint next needs the checker: its reminder, its timeout (again, until a reject
        expires it), or NEVER."""
        cp = self.checkpoint
        due = []
        if cp.timeout is not None and (not self.escalated or cp.on_timeout == "reject"):
            due.append(self.since + timedelta(seconds=cp.timeout))
        if cp.remind_after is not None and not self.reminded:
            due.append(self.since + timedelta(seconds=cp.remind_after))
        return min(due, default=NEVER)


@functools.lru_cache(maxsize=256)
def _spec(text: str) -> WorkflowSpec:
    """A run's spec, validated once per distinct spec: runs of one workflow version share it, and
    validating each of thousands of waiting runs' specs would hold the loop for seconds."""
    return WorkflowSpec.model_validate(json.loads(text))


def _read(row: Any) -> _Waiting | None:
    """A waiting checkpoint with its deadlines, or None if it has none (or its spec cannot be read)."""
    if row.awaiting_since is None:
        return None
    try:
        spec = _spec(json.dumps(row.spec, sort_keys=True))
        checkpoint = spec.step(row.step).checkpoint
    except (ValueError, KeyError):
        log.warning("deadline.bad_spec", run_id=row.run_id, step=row.step)
        return None
    if checkpoint is None or (checkpoint.timeout is None and checkpoint.remind_after is None):
        return None
    return _Waiting(
        row.run_id, row.workflow, row.step, row.id, row.awaiting_since, row.reminded_at is not None,
        row.escalated_at is not None, checkpoint, spec.approvers,
    )


async def _date_new(db: Database) -> None:
    """Give every checkpoint posted since the last scan its first due time (NEVER without deadlines)."""
    while True:
        async with db.sessions() as session:
            rows = await deadline_queries.undated_checkpoints(session=session, limit=BATCH)
        if not rows:
            return
        dates = []
        for row in rows:
            w = _read(row)
            dates.append((row.id, w.next_due() if w else NEVER))
        async with db.sessions.begin() as session:
            await run_writes(session, [deadline_queries.set_due_write(dates)])
        if len(rows) < BATCH:
            return
        await asyncio.sleep(0)  # many to date (after an upgrade): let the loop answer requests between batches


async def _due(db: Database, now: datetime) -> list[_Waiting]:
    async with db.sessions() as session:
        rows = await deadline_queries.due_checkpoints(session=session, now=now, limit=BATCH)
    found = []
    for row in rows:
        w = _read(row)
        if w is None:
            async with db.sessions.begin() as session:
                await run_writes(session, [deadline_queries.set_due_write([(row.id, NEVER)])])
        else:
            found.append(w)
    return found


async def check_deadlines(db: Database, *, now: datetime) -> list[str]:
    """Remind, escalate and expire checkpoints whose deadlines have passed; returns what was done.

    Reads only the checkpoints posted since the last check and those due (ix_step_runs_status_due), up to
    BATCH of each per call: the next call (30 s later) goes on with the rest."""
    await _date_new(db)
    done: list[str] = []
    for w in await _due(db, now):
        done.extend(await _act(db, w, now))
    return done


async def _act(db: Database, w: _Waiting, now: datetime) -> list[str]:
    """What is due for one checkpoint, then its next due time (from what it knows now: a race lost
    means the winner did the same)."""
    cp = w.checkpoint
    where = f"{w.run_id}/{w.step}"
    done: list[str] = []
    if cp.timeout is not None and now >= w.since + timedelta(seconds=cp.timeout):
        if not w.escalated and await _escalate(db, w, now):
            done.append(f"escalated {where} ({cp.on_timeout})")
        w = replace(w, escalated=True, reminded=True)  # a reminder due with the timeout is folded into it
        if cp.on_timeout == "reject":
            try:
                await decide(
                    db, w.run_id, w.step, action=Action.EXPIRE, by=DEADLINE_ACTOR, now=now,
                    reason=f"no decision within {_human(cp.timeout)}",
                )
            except (AlreadyDecided, InvalidState, UnknownRun):
                return done  # decided (or cancelled) by someone else just now
            done.append(f"expired {where}")
            return done
    elif cp.remind_after is not None and not w.reminded and now >= w.since + timedelta(seconds=cp.remind_after):
        if await _remind(db, w, now):
            done.append(f"reminded {where}")
        w = replace(w, reminded=True)
    async with db.sessions.begin() as session:
        await run_writes(session, [deadline_queries.set_due_write([(w.step_run_id, w.next_due())])])
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
