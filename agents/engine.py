"""The engine: runs a workflow's steps in order, recording each, replaying what is already done."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from agents import checkpoints, model_call, outbox, revisions, tracing
from agents.errors import Crashed, InvalidState, PermanentError, StepError, UnknownRun
from agents.fetch_guard import FetchPolicy
from agents.lease import Lease, LeaseLost, default_owner
from agents.inputs import coerce_inputs
from agents.spec import ModelStep, ToolStep, WorkflowSpec
from agents.steps import StepCaller, StepSuccess
from agents.templates import context_for, render, render_value
from sqlalchemy import Connection

from storage import driver_queries, run_queries
from storage.db import Database, Write, run_writes_sync
from storage.driver_queries import AttemptValues
from storage.models import Run, utcnow
from storage.status import DONE_STEP, RUNNABLE, STARTABLE_STEP, RunStatus, StepStatus

log = structlog.get_logger("overseer.engine")

_SPECS_KEPT = 4096  # validated specs kept in memory, by run


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
    max_crashes: int = 3  # a run whose driver died this often while running it fails instead
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)  # the non-public hosts fetch_page may reach
    mock: bool = False  # runs started here are mocked: model steps answered from their contracts, no provider


@dataclass(frozen=True)
class _Start:
    """A step about to be called, with the input it is called with."""

    index: int
    step: str
    kind: str
    call_input: Any
    attempt: AttemptValues  # its first attempt, recorded as started with it
    chained: bool = False  # recorded by the transaction that ended the step before it


@dataclass
class _Driving:
    """A run this process drives: read once when the lease is taken, then kept up to date in memory."""

    run_id: str
    workflow: str
    inputs: dict[str, Any]
    spec: WorkflowSpec
    steps: Sequence[Any]  # driver_queries.step_rows, in order; statuses as read at the claim
    spent: float
    outputs: dict[str, Any] = field(default_factory=dict)
    started: _Start | None = None  # the step whose start is already recorded
    used: dict[str, dict[int, int]] = field(default_factory=dict)  # attempts per target of a resumed step
    crashed: int = 0  # drivers that died with this run
    mocked: bool = False  # started mocked: every model step of it is answered without a provider

    def replay(self) -> int:
        """Collect the outputs of completed steps; the index of the first step not completed."""
        for index, step_run in enumerate(self.steps):
            if step_run.status not in DONE_STEP:
                return index
            self.outputs[step_run.step] = step_run.output  # replayed, never run again
        return len(self.steps)


class Engine:
    """Starts runs and drives them step by step; every state change is one short transaction."""

    def __init__(self, db: Database, *, settings: EngineSettings | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.lease = Lease(db, self.settings.owner, self.settings.lease_seconds, clock)
        # A run is mocked or not for its whole life, whichever process drives it: each gets its caller.
        self._callers = {mock: StepCaller(self.lease, delay_scale=self.settings.delay_scale, secrets=self.settings.secrets,
                                          fetch_policy=self.settings.fetch_policy, mock=mock) for mock in (False, True)}
        self.caller = self._callers[False]
        # Validated specs by run id, with the snapshot they came from: a run's spec is validated once,
        # not at every claim (the snapshot read back must still match).
        self._specs: dict[str, tuple[Any, WorkflowSpec]] = {}

    def _spec_of(self, run_id: str, snapshot: Any) -> WorkflowSpec:
        """The run's validated spec, from the cache when the stored snapshot is the one validated."""
        hit = self._specs.get(run_id)
        if hit is not None and hit[0] == snapshot:
            return hit[1]
        spec = WorkflowSpec.model_validate(snapshot)
        self._remember(run_id, snapshot, spec)
        return spec

    def _remember(self, run_id: str, snapshot: Any, spec: WorkflowSpec) -> None:
        self._specs[run_id] = (snapshot, spec)
        while len(self._specs) > _SPECS_KEPT:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread trimmed it first
                del self._specs[next(iter(self._specs))]

    # --- starting ---------------------------------------------------------------------------------

    async def start(
        self, spec: WorkflowSpec, inputs: dict[str, Any], *, started_by: str, trigger: str = "cli", channel: str | None = None
    ) -> str:
        """Record a new queued run (and announce it); drive it with `advance` or a Runner."""
        run_id, writes = self.start_writes(spec, inputs, started_by=started_by, trigger=trigger, channel=channel)
        await self.db.commit(writes)
        log.info("run.queued", run_id=run_id, workflow=spec.name, trigger=trigger)
        return run_id

    def start_writes(
        self, spec: WorkflowSpec, inputs: dict[str, Any], *, started_by: str, trigger: str, channel: str | None = None
    ) -> tuple[str, list[Write]]:
        """(run id, the writes that start it): for a caller that commits them with writes of its own."""
        values = coerce_inputs(spec, inputs)
        run_id = new_run_id()
        now = self.clock()
        row = {
            "id": run_id, "workflow": spec.name, "inputs": values, "spec": spec.snapshot(), "started_by": started_by,
            "trigger": trigger, "status": RunStatus.QUEUED, "channel": channel or spec.channel, "created_at": now,
            "updated_at": now, "mocked": self.settings.mock,
        }
        self._remember(run_id, row["spec"], spec)
        names = [s.name for s in spec.steps]
        started = outbox.RunStarted(workflow=spec.name, started_by=started_by, trigger=trigger, inputs=values, steps=names,
                                     mocked=self.settings.mock)
        return run_id, [*driver_queries.new_run_writes(row, names), outbox.message(run_id, started)]

    # --- driving ----------------------------------------------------------------------------------

    async def advance(self, run_id: str) -> str:
        """Drive a run until it finishes, fails or waits for a human; returns its status then."""
        driving = await self._take(run_id)
        if driving is None:
            return await self.status(run_id)
        structlog.contextvars.bind_contextvars(run_id=run_id, workflow=driving.workflow, step=None, attempt=None)
        task = asyncio.current_task()
        heartbeat = asyncio.create_task(self.lease.heartbeat(run_id, task))
        try:
            if driving.crashed >= self.settings.max_crashes:
                return await self._dead_letter(driving)
            return await self._drive(driving)
        except LeaseLost:
            log.warning("run.lease_lost", run_id=run_id)
            return await self.status(run_id)
        except asyncio.CancelledError:
            if heartbeat.done() and heartbeat.result() is False:
                return await self.status(run_id)  # cancelled because the lease was lost
            with contextlib.suppress(Exception):  # stopping: hand the run back at once, not at lease expiry
                await asyncio.shield(self._hand_back(run_id))
            raise
        finally:
            heartbeat.cancel()
            structlog.contextvars.unbind_contextvars("run_id", "workflow", "step", "attempt")

    async def status(self, run_id: str) -> str:
        """A run's current status."""
        status = await self.db.read(lambda conn: driver_queries.run_status(conn, run_id=run_id))
        if status is None:
            raise UnknownRun(f"no run {run_id!r}")
        return status

    async def _take(self, run_id: str) -> _Driving | None:
        """Claim the run and, in the same transaction, account for attempts a dead driver left cut off,
        read its steps and record its next step started: one hand-off to the database."""
        taken = await self.db.write(lambda conn: self._take_in(conn, run_id))
        if taken is None:
            return None
        driving, interrupted, charged = taken
        if interrupted:
            log.warning("run.attempts_interrupted", run_id=run_id, count=interrupted, estimated_cost_usd=round(charged, 6))
        return driving

    def _take_in(self, conn: Connection, run_id: str) -> tuple[_Driving, int, float] | None:
        run = self.lease.claim(conn, run_id)
        if run is None:
            return None
        spec = self._spec_of(run_id, run.spec)
        interrupted = driver_queries.interrupt_started(conn, run_id=run_id)
        charged = self._charge_interrupted(conn, run_id, spec, interrupted) if interrupted else 0.0
        steps = driver_queries.step_rows(conn, run_id=run_id)
        driving = _Driving(run_id, run.workflow, run.inputs, spec, steps, run.cost_usd + charged, crashed=run.crashes,
                           mocked=run.mocked)
        index = driving.replay()
        if driving.crashed >= self.settings.max_crashes:
            return driving, len(interrupted), charged  # advance ends it (dead letter) instead of running the step again
        if index < len(steps) and steps[index].attempts > steps[index].retry_base:
            driving.used[steps[index].step] = driver_queries.attempts_per_target(
                conn, run_id=run_id, step=steps[index].step, after=steps[index].retry_base,
            )
        upcoming = self._upcoming(driving, index)
        if upcoming is not None:
            self.lease.write(conn, run_id, [self.lease.fence_step(run_id, upcoming.step), *self._start(driving, upcoming)])
        return driving, len(interrupted), charged

    def _charge_interrupted(self, conn: Connection, run_id: str, spec: WorkflowSpec, rows: Sequence[Any]) -> float:
        """Count attempts cut off by a crash on their steps and the run, at their estimated cost."""
        writes: list[Write] = []
        total = 0.0
        for row in rows:
            messages = (row.input or {}).get("messages") if isinstance(row.input, dict) else None
            step = spec.step(row.step)
            cost = model_call.estimate_cost(row.model, messages, getattr(step, "max_tokens", None)) if messages else 0.0
            total += cost
            writes += driver_queries.interrupted_writes(run_id=run_id, step=row.step, number=row.number, cost_usd=cost)
        failed = [outbox.AttemptFailed(step=r.step, attempt=r.number, model=r.model, error_type="Interrupted",
                                       error="the process driving the run stopped during this attempt") for r in rows]
        self.lease.write(conn, run_id, [
            self.lease.fence(run_id, cost_usd=Run.cost_usd + total), *writes, outbox.message(run_id, *failed),
        ])
        return total

    async def _dead_letter(self, driving: _Driving) -> str:
        """A run its drivers died with too often: it fails with a report, and can be retried."""
        index = driving.replay()
        step_run = driving.steps[min(index, len(driving.steps) - 1)]
        step = driving.spec.step(step_run.step)
        error = Crashed(f"crashed {driving.crashed} times while running {step.name}; not trying again on its own")
        return await self._fail_step(driving.run_id, step_run, step, None, error)

    async def _hand_back(self, run_id: str) -> None:
        await self.db.write(lambda conn: driver_queries.hand_back(conn, run_id=run_id, owner=self.settings.owner))

    @tracing.traced_run
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
        used = driving.used.get(step.name)
        if used is None and step_run.attempts > step_run.retry_base:
            return None  # resumed: _run_step looks up what each target has spent
        try:
            call_input = step_run.input_override or self._render_input(step, driving.inputs, driving.outputs)
            attempt = self._callers[driving.mocked].first_attempt(
                driving.run_id, driving.spec, step, call_input, attempts_so_far=step_run.attempts, spent=driving.spent,
                used=used,
            )
        except StepError:
            return None
        return _Start(index, step.name, step.kind, call_input, attempt)

    def _start(self, driving: _Driving, start: _Start, *announced: outbox.Announcement) -> list[Write]:
        """The writes marking a step running with its input and announcing it (after `announced`), for
        the caller's fenced transaction; the step's call follows that transaction's commit."""
        driving.started = start if not announced else dataclasses.replace(start, chained=True)
        started = outbox.StepStarted(step=start.step, step_kind=start.kind)
        return [
            driver_queries.start_step_write(step_run_id=driving.steps[start.index].id, call_input=start.call_input, now=self.clock()),
            driver_queries.attempt_start_write(start.attempt),
            outbox.message(driving.run_id, *announced, started),
        ]

    async def _run_step(self, driving: _Driving, index: int) -> str:
        """Run one step: "continue" when the next step may go on, or the run's status when it stops here."""
        step_run = driving.steps[index]
        step = driving.spec.step(step_run.step)
        structlog.contextvars.bind_contextvars(step=step.name, attempt=None)
        start = driving.started if driving.started is not None and driving.started.index == index else None
        if start is None:  # not recorded by the previous transaction: record it now
            if step.name not in driving.used and step_run.attempts > step_run.retry_base:
                driving.used[step.name] = await self.db.read(lambda conn: driver_queries.attempts_per_target(
                    conn, run_id=driving.run_id, step=step.name, after=step_run.retry_base,
                ))
            call_input = None
            try:
                call_input = step_run.input_override or self._render_input(step, driving.inputs, driving.outputs)
                attempt = self._callers[driving.mocked].first_attempt(
                    driving.run_id, driving.spec, step, call_input, attempts_so_far=step_run.attempts,
                    spent=driving.spent, used=driving.used.get(step.name),
                )
            except StepError as exc:
                return await self._fail_step(driving.run_id, step_run, step, call_input, exc)
            start = _Start(index, step.name, step.kind, call_input, attempt)
            await self.lease.commit(driving.run_id, [self.lease.fence_step(driving.run_id, step.name), *self._start(driving, start)])
        if not start.chained:  # a chained start is told by the previous step's line: one line per attempt
            log.info("step.started")
        try:
            success = await self._callers[driving.mocked].call(
                driving.run_id, driving.spec, step, start.call_input, attempts_so_far=step_run.attempts, spent=driving.spent,
                used=driving.used.get(step.name), started=start.attempt,
            )
        except StepError as exc:
            return await self._fail_step(driving.run_id, step_run, step, start.call_input, exc)
        except LeaseLost:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or a value nobody foresaw: the step fails, the run ends
            log.exception("step.crashed")
            error = PermanentError(f"internal error while running {step.name}: {type(exc).__name__}: {exc}"[:2000])
            return await self._fail_step(driving.run_id, step_run, step, start.call_input, error)
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
        done: outbox.Announcement
        if waiting:
            done = outbox.CheckpointWaiting(
                step=step.name, output=success.output, format=step.output.format, approvers=list(driving.spec.approvers),
                version=revisions.version_of(driving.steps[index].input_override),
            )
        else:
            done = outbox.StepSucceeded(step=step.name)
        writes = [
            self.lease.fence_charge(
                driving.run_id, attempt, step=upcoming.step if upcoming else step.name,
                status=None if status == "continue" else status,
            ),
            driver_queries.attempt_end_write(attempt),
            driver_queries.end_step_write(
                step_run_id=driving.steps[index].id, status=StepStatus.AWAITING_APPROVAL if waiting else StepStatus.SUCCEEDED,
                output=success.output, now=now, attempt=attempt,
            ),
        ]
        if upcoming is not None:
            writes += self._start(driving, upcoming, done)
        elif status == RunStatus.SUCCEEDED:
            writes.append(outbox.message(driving.run_id, done, outbox.RunFinished(status=status, cost_usd=driving.spent)))
        else:
            writes.append(outbox.message(driving.run_id, done))
        await self.lease.commit(driving.run_id, writes)
        log.info("step.awaiting_approval" if waiting else "step.succeeded", attempt=attempt.number, model=attempt.model_used,
                 latency_ms=round(attempt.latency_ms, 1), tokens_in=attempt.tokens_in, tokens_out=attempt.tokens_out,
                 cost_usd=attempt.cost_usd, next_step=upcoming.step if upcoming else None)
        if status == RunStatus.SUCCEEDED:
            structlog.contextvars.bind_contextvars(step=None, attempt=None)
            log.info("run.finished", status=status)
        return status

    async def _fail_step(
        self, run_id: str, step_run: Any, step: ModelStep | ToolStep, call_input: Any, exc: StepError
    ) -> str:
        now = self.clock()
        message = str(exc)
        fence = self.lease.fence(
            run_id, status=RunStatus.FAILED, error=f"{step.name}: {message}", finished_at=now, lease_owner=None,
            lease_expires_at=None,
        )

        def fail(conn: Connection) -> None:
            self.lease.write(conn, run_id, [fence])
            tried = driver_queries.step_attempts(conn, run_id=run_id, step=step.name)
            failed = outbox.StepFailed(
                step=step.name, step_kind=step.kind, error=message, error_type=type(exc).__name__,
                retried=exc.transient, input=call_input, attempts=outbox.summaries(tried),
                last_raw_output=next((a.raw_output for a in reversed(tried) if a.raw_output), None),
            )
            run_writes_sync(conn, [
                driver_queries.fail_step_write(step_run_id=step_run.id, call_input=call_input, error=message, now=now),
                outbox.message(run_id, failed),
            ])

        await self.db.write(fail)
        log.warning("step.failed", error_type=type(exc).__name__, error=message)
        return RunStatus.FAILED

    async def _finish(self, run_id: str, status: str, spent: float) -> str:
        await self.lease.commit(run_id, [
            self.lease.fence(
                run_id, status=status, finished_at=self.clock(), current_step=None, lease_owner=None, lease_expires_at=None,
            ),
            outbox.message(run_id, outbox.RunFinished(status=status, cost_usd=spent)),
        ])
        structlog.contextvars.bind_contextvars(step=None, attempt=None)
        log.info("run.finished", status=status)
        return status

    async def decide(
        self, run_id: str, step: str, *, action: str, by: str, edited: Any = None, reason: str | None = None,
        version: int | None = None,
    ) -> checkpoints.DecisionOutcome:
        """The one entry point every surface calls to decide a checkpoint (see agents.checkpoints)."""
        return await checkpoints.decide(
            self.db, run_id, step, action=action, by=by, now=self.clock(), edited=edited, reason=reason, version=version,
        )

    async def revise(self, run_id: str, step: str, *, by: str, note: str, version: int | None = None) -> checkpoints.RevisionOutcome:
        """Send a waiting checkpoint back with a note: the step runs again (see agents.checkpoints.revise)."""
        return await checkpoints.revise(self.db, run_id, step, by=by, note=note, version=version, now=self.clock())

    async def pending_step(self, run_ref: str) -> tuple[str, str, Any, WorkflowSpec]:
        """(run id, step, output, spec) of the checkpoint a run waits at."""
        return await checkpoints.pending_step(self.db, run_ref)

    # --- after a failure --------------------------------------------------------------------------

    async def retry(self, run_id: str, *, by: str, step_input: Any = None) -> str:
        """Queue a failed run again from its failed step, optionally with a human's edited input."""
        async with self.db.sessions.begin() as session:
            run = await run_queries.find_run(session=session, ref=run_id)
            if run is None:
                raise UnknownRun(f"no run {run_id!r}")
            failed = next((s for s in await run_queries.step_runs(session=session, run_id=run.id) if s.status == StepStatus.FAILED), None)
            if run.status != RunStatus.FAILED or failed is None:
                raise InvalidState(f"run {run.id} is {run.status}; only a failed run can be retried")
            if not await run_queries.set_run_status(
                session=session, run_id=run.id, to=RunStatus.QUEUED, allowed_from=(RunStatus.FAILED,), error=None, finished_at=None,
                crashes=0,
            ):
                raise InvalidState(f"run {run.id} was retried by someone else just now")
            override = revisions.carry(failed.input_override, step_input) if step_input is not None else failed.input_override
            await run_queries.set_step_status(
                session=session, step_run_id=failed.id, to=StepStatus.PENDING, allowed_from=(StepStatus.FAILED,), error=None,
                input_override=override, retry_base=failed.attempts,  # a person's retry: a fresh attempt budget
            )
            await outbox.announce(session, run.id, outbox.RunRetried(step=failed.step, by=by, edited_input=step_input is not None))
        log.info("run.retried", run_id=run.id, step=failed.step, by=by)
        return run.id

    async def cancel(self, run_id: str, *, by: str) -> str:
        """Stop a run that has not finished; its driver notices at its next write."""
        async with self.db.sessions.begin() as session:
            run = await run_queries.find_run(session=session, ref=run_id)
            if run is None:
                raise UnknownRun(f"no run {run_id!r}")
            if not await run_queries.set_run_status(
                session=session, run_id=run.id, to=RunStatus.CANCELLED,
                allowed_from=(*RUNNABLE, RunStatus.AWAITING_APPROVAL, RunStatus.FAILED),
                finished_at=self.clock(), error=f"cancelled by {by}", lease_owner=None, lease_expires_at=None,
            ):
                raise InvalidState(f"run {run.id} is already {run.status}")
            await outbox.announce(session, run.id, outbox.RunFinished(status=RunStatus.CANCELLED, by=by, cost_usd=run.cost_usd))
        log.info("run.cancelled", run_id=run.id, by=by)
        return run.id

