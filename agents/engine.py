"""The engine: runs a workflow's steps in order, recording each, replaying what is already done."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from agents import outbox
from agents.errors import InvalidState, StepError, TemplateFailure, UnknownRun
from agents.inputs import coerce_inputs
from agents.spec import ModelStep, ToolStep, WorkflowSpec
from agents.steps import StepCaller, StepSuccess
from agents.templates import context_for, render, render_value
from storage import queries
from storage.db import Database, Write, run_writes
from storage.models import Attempt, Run, utcnow
from storage.status import DONE_STEP, RUNNABLE, STARTABLE_STEP, RunStatus, StepStatus

log = structlog.get_logger("overseer.engine")


def default_owner() -> str:
    """This process's name in leases: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def owner_process(owner: str) -> tuple[str, int] | None:
    """(host, pid) of a lease owner named by default_owner, or None for other names."""
    host, _, rest = owner.partition(":")
    pid, _, _tag = rest.partition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


def new_run_id() -> str:
    """A short id people can type."""
    return secrets.token_hex(6)


@dataclass(frozen=True)
class EngineSettings:
    """Plain values the bot or CLI reads from configuration and hands down."""

    owner: str = field(default_factory=default_owner)
    lease_seconds: float = 60.0
    delay_scale: float = 1.0  # tests shrink backoff waits through this, not by patching
    secrets: Mapping[str, str] = field(default_factory=dict)  # what api_key_env names resolve to


_Message = tuple[str, str, dict[str, Any]]


def _message(run_id: str, kind: str, **payload: Any) -> _Message:
    """An announcement for queries.outbox_write (see agents.outbox for the kinds)."""
    return (run_id, kind, payload)


@dataclass(frozen=True)
class _Start:
    """A step about to be called, with the input it is called with."""

    index: int
    step: str
    kind: str
    call_input: Any


@dataclass
class _Driving:
    """A run this process drives: read once when the lease is taken, then kept up to date in memory."""

    run_id: str
    workflow: str
    inputs: dict[str, Any]
    spec: WorkflowSpec
    steps: Sequence[Any]  # queries.step_rows, in order; statuses as read at the claim
    spent: float
    outputs: dict[str, Any] = field(default_factory=dict)
    started: _Start | None = None  # the step whose start is already recorded

    def replay(self) -> int:
        """Collect the outputs of completed steps; the index of the first step not completed."""
        for index, step_run in enumerate(self.steps):
            if step_run.status not in DONE_STEP:
                return index
            self.outputs[step_run.step] = step_run.output  # replayed, never run again
        return len(self.steps)


class LeaseLost(Exception):
    """Another process took the run over, or it was cancelled: stop touching it."""


class Engine:
    """Starts runs and drives them step by step; every state change is one short transaction."""

    def __init__(self, db: Database, *, settings: EngineSettings | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.caller = StepCaller(self)

    # --- starting ---------------------------------------------------------------------------------

    async def start(
        self, spec: WorkflowSpec, inputs: dict[str, Any], *, started_by: str, trigger: str = "cli", channel: str | None = None
    ) -> str:
        """Record a new queued run (and announce it); drive it with `advance` or a Runner."""
        values = coerce_inputs(spec, inputs)
        run_id = new_run_id()
        now = self.clock()
        row = {
            "id": run_id, "workflow": spec.name, "inputs": values, "spec": spec.snapshot(), "started_by": started_by,
            "trigger": trigger, "status": RunStatus.QUEUED, "channel": channel or spec.channel, "created_at": now, "updated_at": now,
        }
        names = [s.name for s in spec.steps]
        started = _message(
            run_id, outbox.RUN_STARTED, workflow=spec.name, started_by=started_by, trigger=trigger, inputs=values,
            steps=names,
        )
        async with self.db.sessions.begin() as session:
            await run_writes(session, [*queries.run_writes(row, names), queries.outbox_write([started])])
        log.info("run.queued", run_id=run_id, workflow=spec.name, trigger=trigger)
        return run_id

    # --- driving ----------------------------------------------------------------------------------

    async def advance(self, run_id: str) -> str:
        """Drive a run until it finishes, fails or waits for a human; returns its status then."""
        driving = await self._take(run_id)
        if driving is None:
            return await self.status(run_id)
        structlog.contextvars.bind_contextvars(run_id=run_id, workflow=driving.workflow, step=None, attempt=None)
        task = asyncio.current_task()
        heartbeat = asyncio.create_task(self._heartbeat(run_id, task))
        try:
            return await self._drive(driving)
        except LeaseLost:
            log.warning("run.lease_lost", run_id=run_id)
            return await self.status(run_id)
        except asyncio.CancelledError:
            if heartbeat.done() and heartbeat.result() is False:
                return await self.status(run_id)  # cancelled because the lease was lost
            raise
        finally:
            heartbeat.cancel()
            structlog.contextvars.unbind_contextvars("run_id", "workflow", "step", "attempt")

    async def _heartbeat(self, run_id: str, task: asyncio.Task[Any] | None) -> bool:
        interval = max(self.settings.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.db.sessions.begin() as session:
                    ours = await queries.renew_lease(
                        session=session, run_id=run_id, owner=self.settings.owner, now=self.clock(),
                        lease_s=self.settings.lease_seconds,
                    )
            except Exception as exc:  # noqa: BLE001 - the lease outlives two missed beats: try again
                log.warning("run.heartbeat_failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}")
                continue
            if not ours:
                if task is not None:
                    task.cancel()
                return False

    async def status(self, run_id: str) -> str:
        """A run's current status."""
        async with self.db.sessions() as session:
            run = await queries.get_run(session=session, run_id=run_id)
            if run is None:
                raise UnknownRun(f"no run {run_id!r}")
            return run.status

    async def _take(self, run_id: str) -> _Driving | None:
        """Claim the run and, in the same transaction, read its steps and record its next step started."""
        now = self.clock()
        async with self.db.sessions.begin() as session:
            run = await queries.claim_run_returning(
                session=session, run_id=run_id, owner=self.settings.owner, now=now, lease_s=self.settings.lease_seconds
            )
            if run is None:
                return None
            steps = await queries.step_rows(session=session, run_id=run_id)
            spec = WorkflowSpec.model_validate(run.spec)
            driving = _Driving(run_id, run.workflow, run.inputs, spec, steps, run.cost_usd)
            upcoming = self._upcoming(driving, driving.replay())
            if upcoming is not None:
                await self._write(session, run_id, [self._fence_step(run_id, upcoming.step), *self._start(driving, upcoming)])
        return driving

    async def _drive(self, driving: _Driving) -> str:
        for index, step_run in enumerate(driving.steps):
            if step_run.status in DONE_STEP:
                continue  # replayed (its output is in driving.outputs), never run again
            if step_run.status not in STARTABLE_STEP:
                return await self.status(driving.run_id)
            status = await self._run_step(driving, index)
            if status != "continue":
                return status
        return await self._finish(driving.run_id, RunStatus.SUCCEEDED, driving.spent)

    async def _fence(self, session: AsyncSession, run_id: str, **values: Any) -> None:
        """Every driver write starts here: it happens only while this process holds a live lease."""
        if not await queries.fence_run(session=session, run_id=run_id, owner=self.settings.owner, now=self.clock(), **values):
            raise LeaseLost(run_id)

    def _fence_step(self, run_id: str, step: str) -> Write:
        """_fence's write for the hot path: set the run's current step."""
        return queries.fence_step_write(run_id=run_id, owner=self.settings.owner, now=self.clock(), step=step)

    async def _write(self, session: AsyncSession, run_id: str, writes: list[Write]) -> None:
        """Run the writes of a driver transaction in order; the first is the fence (LeaseLost when it
        fails, and the transaction rolls back whole)."""
        if not await run_writes(session, writes):
            raise LeaseLost(run_id)

    async def charge(self, session: AsyncSession, run_id: str, attempt: Attempt) -> None:
        """Record an attempt and add its tokens and cost to the run, fenced by the lease."""
        await self._fence(
            session, run_id, tokens_in=Run.tokens_in + attempt.tokens_in, tokens_out=Run.tokens_out + attempt.tokens_out,
            cost_usd=Run.cost_usd + attempt.cost_usd,
        )
        session.add(attempt)

    def _render_input(self, step: ModelStep | ToolStep, inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
        context = context_for(inputs, outputs)
        if isinstance(step, ModelStep):
            return {"system": render(step.system, context) if step.system else None, "prompt": render(step.prompt, context)}
        return render_value(dict(step.args), context)

    def _upcoming(self, driving: _Driving, index: int) -> _Start | None:
        """Step `index` and its input, if it can start now: pending (or interrupted) and its input renders.
        None otherwise; _run_step then renders again and records the failure, or the loop stops."""
        if index >= len(driving.steps) or driving.steps[index].status not in STARTABLE_STEP:
            return None
        step_run = driving.steps[index]
        step = driving.spec.step(step_run.step)
        try:
            call_input = step_run.input_override or self._render_input(step, driving.inputs, driving.outputs)
        except TemplateFailure:
            return None
        return _Start(index, step.name, step.kind, call_input)

    def _start(self, driving: _Driving, start: _Start, *announced: _Message) -> list[Write]:
        """The writes marking a step running with its input and announcing it (after `announced`), for
        the caller's fenced transaction; the step's call follows that transaction's commit."""
        driving.started = start
        started = _message(driving.run_id, outbox.STEP_STARTED, step=start.step, step_kind=start.kind)
        return [
            queries.start_step_write(step_run_id=driving.steps[start.index].id, call_input=start.call_input, now=self.clock()),
            queries.outbox_write([*announced, started]),
        ]

    async def _run_step(self, driving: _Driving, index: int) -> str:
        """Run one step: "continue" when the next step may go on, or the run's status when it stops here."""
        step_run = driving.steps[index]
        step = driving.spec.step(step_run.step)
        structlog.contextvars.bind_contextvars(step=step.name, attempt=None)
        start = driving.started if driving.started is not None and driving.started.index == index else None
        if start is None:  # not recorded by the previous transaction: record it now
            try:
                call_input = step_run.input_override or self._render_input(step, driving.inputs, driving.outputs)
            except TemplateFailure as exc:
                return await self._fail_step(driving.run_id, step_run, step, None, exc)
            start = _Start(index, step.name, step.kind, call_input)
            async with self.db.sessions.begin() as session:
                await self._write(session, driving.run_id, [self._fence_step(driving.run_id, step.name), *self._start(driving, start)])
        log.info("step.started")
        try:
            success = await self.caller.call(
                driving.run_id, driving.spec, step, start.call_input, attempts_so_far=step_run.attempts, spent=driving.spent
            )
        except StepError as exc:
            return await self._fail_step(driving.run_id, step_run, step, start.call_input, exc)
        driving.outputs[step.name] = success.output
        driving.spent = success.spent
        return await self._succeed_step(driving, index, step, success)

    async def _succeed_step(self, driving: _Driving, index: int, step: ModelStep | ToolStep, success: StepSuccess) -> str:
        """One transaction records the attempt, the step's result and what follows: the checkpoint wait,
        the next step's start (saving that step a transaction of its own), or the run's end."""
        now = self.clock()
        attempt = success.attempt
        waiting = step.checkpoint is not None
        last = all(s.status in DONE_STEP for s in driving.steps[index + 1:])
        upcoming = None if waiting or last else self._upcoming(driving, index + 1)
        status = RunStatus.AWAITING_APPROVAL if waiting else RunStatus.SUCCEEDED if last else "continue"
        if waiting:
            done = _message(
                driving.run_id, outbox.CHECKPOINT_WAITING, step=step.name, output=success.output,
                format=step.output.format, approvers=list(driving.spec.approvers),
            )
        else:
            done = _message(driving.run_id, outbox.STEP_SUCCEEDED, step=step.name)
        writes = [
            queries.fence_charge_write(
                run_id=driving.run_id, owner=self.settings.owner, now=now, attempt=attempt,
                step=upcoming.step if upcoming else step.name, status=None if status == "continue" else status,
            ),
            queries.attempt_write(attempt),
            queries.end_step_write(
                step_run_id=driving.steps[index].id, status=StepStatus.AWAITING_APPROVAL if waiting else StepStatus.SUCCEEDED,
                output=success.output, now=now, attempt=attempt,
            ),
        ]
        if upcoming is not None:
            writes += self._start(driving, upcoming, done)
        elif status == RunStatus.SUCCEEDED:
            writes.append(queries.outbox_write([done, _message(driving.run_id, outbox.RUN_FINISHED, status=status, cost_usd=driving.spent)]))
        else:
            writes.append(queries.outbox_write([done]))
        async with self.db.sessions.begin() as session:
            await self._write(session, driving.run_id, writes)
        log.info("step.awaiting_approval" if waiting else "step.succeeded", attempt=attempt.number)
        if status == RunStatus.SUCCEEDED:
            structlog.contextvars.bind_contextvars(step=None, attempt=None)
            log.info("run.finished", status=status)
        return status

    async def _fail_step(
        self, run_id: str, step_run: Any, step: ModelStep | ToolStep, call_input: Any, exc: StepError
    ) -> str:
        now = self.clock()
        message = str(exc)
        async with self.db.sessions.begin() as session:
            await self._fence(
                session, run_id, status=RunStatus.FAILED, error=f"{step.name}: {message}", finished_at=now,
                lease_owner=None, lease_expires_at=None,
            )
            tried = await queries.attempts(session=session, run_id=run_id, step=step.name)
            await queries.set_step_status(
                session=session, step_run_id=step_run.id, to=StepStatus.FAILED, allowed_from=STARTABLE_STEP,
                input=call_input, error=message, finished_at=now,
            )
            outbox.announce(
                session, run_id, outbox.STEP_FAILED, step=step.name, step_kind=step.kind, error=message,
                error_type=type(exc).__name__, retried=exc.transient, input=call_input,
                attempts=[_attempt_summary(a) for a in tried],
                last_raw_output=next((a.raw_output for a in reversed(tried) if a.raw_output), None),
            )
        log.warning("step.failed", error_type=type(exc).__name__, error=message)
        return RunStatus.FAILED

    async def _finish(self, run_id: str, status: str, spent: float) -> str:
        async with self.db.sessions.begin() as session:
            await self._fence(
                session, run_id, status=status, finished_at=self.clock(), current_step=None,
                lease_owner=None, lease_expires_at=None,
            )
            outbox.announce(session, run_id, outbox.RUN_FINISHED, status=status, cost_usd=spent)
        structlog.contextvars.bind_contextvars(step=None, attempt=None)
        log.info("run.finished", status=status)
        return status

    async def decide(
        self, run_id: str, step: str, *, action: str, by: str, edited: Any = None, reason: str | None = None
    ) -> Any:
        """The one entry point every surface calls to decide a checkpoint (see agents.checkpoints)."""
        from agents.checkpoints import decide

        return await decide(self, run_id, step, action=action, by=by, edited=edited, reason=reason)

    # --- after a failure --------------------------------------------------------------------------

    async def retry(self, run_id: str, *, by: str, step_input: Any = None) -> str:
        """Queue a failed run again from its failed step, optionally with a human's edited input."""
        async with self.db.sessions.begin() as session:
            run = await queries.find_run(session=session, ref=run_id)
            if run is None:
                raise UnknownRun(f"no run {run_id!r}")
            failed = next((s for s in await queries.step_runs(session=session, run_id=run.id) if s.status == StepStatus.FAILED), None)
            if run.status != RunStatus.FAILED or failed is None:
                raise InvalidState(f"run {run.id} is {run.status}; only a failed run can be retried")
            if not await queries.set_run_status(
                session=session, run_id=run.id, to=RunStatus.QUEUED, allowed_from=(RunStatus.FAILED,), error=None, finished_at=None
            ):
                raise InvalidState(f"run {run.id} was retried by someone else just now")
            override = step_input if step_input is not None else failed.input_override
            await queries.set_step_status(
                session=session, step_run_id=failed.id, to=StepStatus.PENDING, allowed_from=(StepStatus.FAILED,), error=None,
                input_override=override,
            )
            outbox.announce(session, run.id, outbox.RUN_RETRIED, step=failed.step, by=by, edited_input=step_input is not None)
        log.info("run.retried", run_id=run.id, step=failed.step, by=by)
        return run.id

    async def cancel(self, run_id: str, *, by: str) -> str:
        """Stop a run that has not finished; its driver notices at its next write."""
        async with self.db.sessions.begin() as session:
            run = await queries.find_run(session=session, ref=run_id)
            if run is None:
                raise UnknownRun(f"no run {run_id!r}")
            if not await queries.set_run_status(
                session=session, run_id=run.id, to=RunStatus.CANCELLED,
                allowed_from=(*RUNNABLE, RunStatus.AWAITING_APPROVAL, RunStatus.FAILED),
                finished_at=self.clock(), error=f"cancelled by {by}", lease_owner=None, lease_expires_at=None,
            ):
                raise InvalidState(f"run {run.id} is already {run.status}")
            outbox.announce(session, run.id, outbox.RUN_FINISHED, status=RunStatus.CANCELLED, by=by, cost_usd=run.cost_usd)
        log.info("run.cancelled", run_id=run.id, by=by)
        return run.id


def _attempt_summary(attempt: Any) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "model": attempt.model,
        "fallback_index": attempt.fallback_index,
        "at": attempt.started_at.isoformat(),
        "error_type": attempt.error_type,
        "error": (attempt.error_message or "")[:500] or None,
        "backoff_s": attempt.backoff_s,
        "latency_ms": round(attempt.latency_ms, 1),
    }
