"""Deciding checkpoints: approve, edit or reject, exactly once, from any surface."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from agents import outbox
from agents.contract import check_edit
from agents.errors import AlreadyDecided, InvalidState, UnknownRun, UserInputError
from agents.spec import WorkflowSpec
from agents.text import as_text
from storage import run_queries
from storage.db import Database
from storage.models import Decision
from storage.status import Action, RunStatus, StepStatus

log = structlog.get_logger("overseer.checkpoint")

@dataclass(frozen=True)
class DecisionOutcome:
    """What was decided, by whom, and where the run stands now."""

    run_id: str
    step: str
    action: str
    decided_by: str
    decided_at: datetime
    run_status: str
    chars_changed: int
    chars_total: int
    reason: str | None


def chars_changed(before: Any, after: Any) -> tuple[int, int]:
    """(characters changed, characters in the original): how much a human had to fix."""
    a, b = as_text(before), as_text(after)
    matched = sum(block.size for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return max(len(a), len(b)) - matched, len(a)


async def pending_step(db: Database, run_ref: str) -> tuple[str, str, Any, WorkflowSpec]:
    """(run id, step, output, spec) of the checkpoint a run waits at."""
    async with db.sessions() as session:
        run = await run_queries.find_run(session=session, ref=run_ref)
        if run is None:
            raise UnknownRun(f"no run {run_ref!r}")
        waiting = [s for s in await run_queries.step_runs(session=session, run_id=run.id) if s.status == StepStatus.AWAITING_APPROVAL]
        if run.status != RunStatus.AWAITING_APPROVAL or not waiting:
            raise InvalidState(f"run {run.id} is {run.status}, not waiting at a checkpoint")
        return run.id, waiting[0].step, waiting[0].output, WorkflowSpec.model_validate(run.spec)


async def decide(
    db: Database, run_id: str, step: str, *, action: str, by: str, now: datetime, edited: Any = None,
    reason: str | None = None,
) -> DecisionOutcome:
    """Record a decision; of two racing decisions one wins and the other gets AlreadyDecided."""
    try:
        action = Action(action)
    except ValueError:
        raise UserInputError(f"unknown decision {action!r}: approve, edit or reject") from None
    async with db.sessions.begin() as session:
        run = await run_queries.get_run(session=session, run_id=run_id)
        step_run = await run_queries.get_step_run(session=session, run_id=run_id, step=step) if run else None
        if run is None or step_run is None:
            raise UnknownRun(f"no checkpoint {step!r} in run {run_id!r}")
        spec = WorkflowSpec.model_validate(run.spec)
        output = step_run.output
        if action == Action.EDIT:
            output = check_edit(spec.step(step).output, edited)  # raises before anything changes
        won = await run_queries.set_step_status(
            session=session, step_run_id=step_run.id, to=action.step_status, allowed_from=(StepStatus.AWAITING_APPROVAL,),
            output=output,
        )
        if not won:
            await _raise_already_decided(session, step_run.id, run.status)
        changed, total = chars_changed(step_run.output, output) if action == Action.EDIT else (0, len(as_text(step_run.output)))
        wait_s = (now - step_run.awaiting_since).total_seconds() if step_run.awaiting_since else 0.0
        session.add(Decision(
            step_run_id=step_run.id, run_id=run_id, step=step, action=action, decided_by=by, decided_at=now,
            original_output=step_run.output, edited_output=output if action == Action.EDIT else None, reason=reason,
            chars_changed=changed, chars_total=total, wait_s=wait_s,
        ))
        new_status = RunStatus.QUEUED if action.goes_on else RunStatus(action.past)
        done = {} if action.goes_on else {"finished_at": now, "error": f"{action.past} by {by}" + (f": {reason}" if reason else "")}
        if not await run_queries.set_run_status(
            session=session, run_id=run_id, to=new_status, allowed_from=(RunStatus.AWAITING_APPROVAL,), **done
        ):
            raise InvalidState(f"run {run_id} is {run.status}; its checkpoint can no longer be decided")
        decided = outbox.CheckpointDecided(
            step=step, action=action, by=by, at=now.isoformat(), reason=reason, chars_changed=changed, chars_total=total,
        )
        finished = [] if action.goes_on else [outbox.RunFinished(status=new_status, by=by, reason=reason, cost_usd=run.cost_usd)]
        await outbox.announce(session, run_id, decided, *finished)
    log.info("checkpoint.decided", run_id=run_id, step=step, action=action, by=by)
    return DecisionOutcome(run_id, step, action, by, now, new_status, changed, total, reason)


async def _raise_already_decided(session: Any, step_run_id: int, run_status: str) -> None:
    first = await run_queries.decision_for(session=session, step_run_id=step_run_id)
    if first is None:
        raise InvalidState(f"this checkpoint is no longer waiting (run is {run_status})")
    when = first.decided_at.strftime("%Y-%m-%d %H:%M UTC")
    raise AlreadyDecided(
        f"already {Action(first.action).past} by {first.decided_by} at {when}", decided_by=first.decided_by, action=first.action
    )
