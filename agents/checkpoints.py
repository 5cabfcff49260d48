"""Deciding checkpoints: approve, edit, revise or reject, exactly once, from any surface.

Every decision names the version it was shown (a click on an older one decides nothing). A checkpoint
with `approvals: N` counts each approver once per version, under a lock on the checkpoint's row, and
only the Nth approval moves the run on; an edit then becomes the next version, approved by its editor.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from agents import outbox
from agents.contract import check_edit
from agents.errors import AlreadyDecided, InvalidInputs, InvalidState, NotAllowed, StaleVersion, UnknownRun, UserInputError
from agents.revisions import revised_input
from agents.spec import CheckpointSpec, ModelStep, WorkflowSpec
from agents.text import as_text
from storage import checkpoint_queries as cq
from storage import run_queries
from storage.db import Database
from storage.models import Decision
from storage.status import Action, RunStatus, StepStatus

log = structlog.get_logger("overseer.checkpoint")
PROFILE_TRIGGER = "profile"  # its checkpoints are approved automatically: one approval, by the profiler

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
    version: int = 1
    approvers: tuple[str, ...] = ()  # whose approvals of this version count so far (several needed)
    needed: int = 1


@dataclass(frozen=True)
class RevisionOutcome:
    """A version sent back with a note: the version the re-run makes, and the rounds left after it."""

    run_id: str
    step: str
    version: int
    by: str
    revisions_left: int


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


def checkpoint_of(spec: WorkflowSpec, step: str) -> CheckpointSpec:
    """A step's checkpoint settings (the defaults if the spec no longer says)."""
    return spec.step(step).checkpoint or CheckpointSpec()


def check_self_approval(spec: WorkflowSpec, step: str, *, started_by: str, by: str, action: str) -> None:
    """With `self_approval: false`, the run's starter may not approve or edit it (rejecting is fine)."""
    if action in (Action.APPROVE, Action.EDIT) and not checkpoint_of(spec, step).self_approval and by == started_by:
        raise NotAllowed(f"you started this run; someone else must {action} this checkpoint (self_approval: false)")


async def _checkpoint_of_run(session: Any, run_id: str, step: str) -> tuple[Any, Any, WorkflowSpec]:
    """The run, its step's row and its spec; UnknownRun when either is missing."""
    run = await run_queries.get_run(session=session, run_id=run_id)
    step_run = await run_queries.get_step_run(session=session, run_id=run_id, step=step) if run else None
    if run is None or step_run is None:
        raise UnknownRun(f"no checkpoint {step!r} in run {run_id!r}")
    return run, step_run, WorkflowSpec.model_validate(run.spec)


async def decide(
    db: Database, run_id: str, step: str, *, action: str, by: str, now: datetime, edited: Any = None,
    reason: str | None = None, version: int | None = None,
) -> DecisionOutcome:
    """Record a decision on `version` (default: the current one); of two racing decisions one wins and the
    other gets AlreadyDecided, and a decision on an older version gets StaleVersion."""
    try:
        action = Action(action)
    except ValueError:
        raise UserInputError(f"unknown decision {action!r}: approve, edit or reject") from None
    async with db.sessions.begin() as session:
        run, step_run, spec = await _checkpoint_of_run(session, run_id, step)
        shown = step_run.version if version is None else version
        automatic = run.trigger == PROFILE_TRIGGER
        if not automatic:
            check_self_approval(spec, step, started_by=run.started_by, by=by, action=action)
        needed = checkpoint_of(spec, step).approvals if action.goes_on and not automatic else 1
        output = step_run.output
        if action == Action.EDIT:
            output = check_edit(spec.step(step).output, edited)  # raises before anything changes
        if not await cq.hold(session=session, step_run_id=step_run.id, version=shown):
            await _raise_not_waiting(session, step_run.id, shown, run.status)
        if needed > 1:
            return await _count_approval(session, run, step_run, spec, action, by, now, output, shown, needed)
        return await _decided(session, run, step_run, action, by, now, output, reason, shown, ())


async def _count_approval(
    session: Any, run: Any, step_run: Any, spec: WorkflowSpec, action: Action, by: str, now: datetime, output: Any,
    shown: int, needed: int,
) -> DecisionOutcome:
    """One approval of several (the checkpoint is held): counted once per approver; the Nth decides.
    An edit becomes the next version, with its editor's approval the first one of it."""
    prior = await cq.approvers(session=session, step_run_id=step_run.id, version=shown)
    if by in prior:
        raise InvalidState(f"you already approved v{shown}; it waits for {needed - len(prior)} more approval(s)")
    if action == Action.EDIT:
        first = await cq.first_attempt_of(session=session, step_run_id=step_run.id, version=shown)
        cq.add_version(session=session, step_run=step_run, version=shown, output=step_run.output, outcome="edited", by=by,
                       at=now, first_attempt=first)
        await cq.replace_version(session=session, step_run_id=step_run.id, version=shown, output=output, now=now)
        shown, prior = shown + 1, []
    cq.add_approval(session=session, step_run=step_run, version=shown, by=by, at=now)
    approvers = (*prior, by)
    if len(approvers) >= needed:
        return await _decided(session, run, step_run, Action.APPROVE, by, now, step_run.output, None, shown, approvers)
    fmt = spec.step(step_run.step).output.format
    waiting = [outbox.CheckpointWaiting(step=step_run.step, output=output, format=fmt, approvers=list(spec.approvers),
                                        version=shown)] if action == Action.EDIT else []
    approved = outbox.CheckpointApproved(step=step_run.step, version=shown, by=by, approvers=list(approvers), needed=needed)
    await outbox.announce(session, run.id, *waiting, approved)
    log.info("checkpoint.approval_counted", run_id=run.id, step=step_run.step, version=shown, by=by, approvals=len(approvers),
             needed=needed)
    return DecisionOutcome(run.id, step_run.step, action, by, now, RunStatus.AWAITING_APPROVAL, 0, 0, None, shown,
                           approvers, needed)


async def _decided(
    session: Any, run: Any, step_run: Any, action: Action, by: str, now: datetime, output: Any, reason: str | None,
    version: int, approvers: tuple[str, ...],
) -> DecisionOutcome:
    """The checkpoint's one decision (it is held): the step, the decision, the version and the run, announced."""
    run_id, step = run.id, step_run.step
    won = await run_queries.set_step_status(
        session=session, step_run_id=step_run.id, to=action.step_status, allowed_from=(StepStatus.AWAITING_APPROVAL,),
        output=output,
    )
    if not won:
        await _raise_not_waiting(session, step_run.id, version, run.status)
    changed, total = chars_changed(step_run.output, output) if action == Action.EDIT else (0, len(as_text(step_run.output)))
    wait_s = (now - step_run.awaiting_since).total_seconds() if step_run.awaiting_since else 0.0
    session.add(Decision(
        step_run_id=step_run.id, run_id=run_id, step=step, action=action, decided_by=by, decided_at=now,
        original_output=step_run.output, edited_output=output if action == Action.EDIT else None, reason=reason,
        chars_changed=changed, chars_total=total, wait_s=wait_s, workflow=run.workflow,
    ))
    first = await cq.first_attempt_of(session=session, step_run_id=step_run.id, version=version)
    cq.add_version(session=session, step_run=step_run, version=version, output=output, outcome=action, by=by, at=now,
                   note=reason, first_attempt=first)
    new_status = RunStatus.QUEUED if action.goes_on else RunStatus(action.past)
    done = {} if action.goes_on else {"finished_at": now, "error": f"{action.past} by {by}" + (f": {reason}" if reason else "")}
    if not await run_queries.set_run_status(
        session=session, run_id=run_id, to=new_status, allowed_from=(RunStatus.AWAITING_APPROVAL,), **done
    ):
        raise InvalidState(f"run {run_id} is {run.status}; its checkpoint can no longer be decided")
    decided = outbox.CheckpointDecided(
        step=step, action=action, by=by, at=now.isoformat(), reason=reason, chars_changed=changed, chars_total=total,
        version=version, approvers=list(approvers),
    )
    finished = [] if action.goes_on else [outbox.RunFinished(status=new_status, by=by, reason=reason, cost_usd=run.cost_usd)]
    await outbox.announce(session, run_id, decided, *finished)
    log.info("checkpoint.decided", run_id=run_id, step=step, action=action, by=by, version=version)
    return DecisionOutcome(run_id, step, action, by, now, new_status, changed, total, reason, version, approvers,
                           max(len(approvers), 1))


async def revise(
    db: Database, run_id: str, step: str, *, by: str, note: str, now: datetime, version: int | None = None
) -> RevisionOutcome:
    """Send `version` (default: the current one) back with a note: the step runs again with its output and
    the note added to the model's messages, making the next version. Of racing revisions one wins."""
    note = (note or "").strip()
    if not note:
        raise InvalidInputs("say what should change")
    async with db.sessions.begin() as session:
        run, step_run, spec = await _checkpoint_of_run(session, run_id, step)
        cp = checkpoint_of(spec, step)
        shown = step_run.version if version is None else version
        if step_run.status != StepStatus.AWAITING_APPROVAL or run.status != RunStatus.AWAITING_APPROVAL or shown != step_run.version:
            await _raise_not_waiting(session, step_run.id, shown, run.status)
        if not isinstance(spec.step(step), ModelStep):
            raise InvalidState(f"{step} is a tool step: only a model step can be revised with a note; edit or reject it")
        if step_run.revisions >= cp.max_revisions:
            raise InvalidState(f"no revisions left: {step} allows {cp.max_revisions} (checkpoint.max_revisions); approve, edit or reject it")
        override = revised_input(step_run.input, output=step_run.output, note=note, by=by, version=shown + 1)
        first = await cq.first_attempt_of(session=session, step_run_id=step_run.id, version=shown)
        if not await cq.start_revision(session=session, step_run_id=step_run.id, version=shown, revisions=step_run.revisions,
                                       input_override=override, attempts=step_run.attempts):
            await _raise_not_waiting(session, step_run.id, shown, run.status)
        cq.add_version(session=session, step_run=step_run, version=shown, output=step_run.output, outcome="revised", by=by,
                       at=now, note=note, first_attempt=first)
        if not await run_queries.set_run_status(session=session, run_id=run_id, to=RunStatus.QUEUED,
                                                allowed_from=(RunStatus.AWAITING_APPROVAL,)):
            raise InvalidState(f"run {run_id} is {run.status}; its checkpoint can no longer be revised")
        await outbox.announce(session, run_id, outbox.CheckpointRevising(step=step, version=shown, by=by, note=note,
                                                                         at=now.isoformat()))
    log.info("checkpoint.revising", run_id=run_id, step=step, version=shown, by=by)
    return RevisionOutcome(run_id, step, shown + 1, by, cp.max_revisions - step_run.revisions - 1)


async def _raise_not_waiting(session: Any, step_run_id: int, shown: int, run_status: str) -> None:
    """Why a checkpoint can no longer be decided at `shown`: someone decided it, or a newer version is up."""
    first = await run_queries.decision_for(session=session, step_run_id=step_run_id)
    if first is not None:
        when = first.decided_at.strftime("%Y-%m-%d %H:%M UTC")
        raise AlreadyDecided(
            f"already {Action(first.action).past} by {first.decided_by} at {when}", decided_by=first.decided_by, action=first.action
        )
    state = await cq.current(session=session, step_run_id=step_run_id)
    if state is not None and state[1] != shown:
        raise StaleVersion(f"a newer version is up: this is v{shown}, the checkpoint is at v{state[1]}", shown=shown,
                           current=state[1])
    raise InvalidState(f"this checkpoint is no longer waiting (run is {run_status})")
