"""One step's calls: attempts under the retry policy, fallback models, each attempt recorded."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from collections.abc import Mapping
from typing import Any

import structlog
from tenacity import RetryCallState

from agents import mock_output, model_call, outbox, tracing
from agents.contract import check_output, contract_instructions
from agents.errors import AttemptsSpent, BadOutput, BudgetExceeded, CallTimeout, StepError
from agents.fetch_guard import FetchPolicy
from agents.retry import retrying, waits_too_long
from agents.revisions import revision_messages
from agents.slots import wait_out
from agents.spec import ModelStep, ToolStep, WorkflowSpec
from agents.lease import Lease
from agents.text import as_text
from agents.tools import call_tool
from storage import driver_queries
from storage.driver_queries import AttemptValues
from storage.status import AttemptStatus

log = structlog.get_logger("overseer.step")


@dataclass
class _StepState:
    """What the attempts of one step share: numbering, money spent, feedback for the model."""

    run_id: str
    number: int
    spent: float
    feedback: list[dict[str, str]] = field(default_factory=list)
    last_failed: AttemptValues | None = None  # the backoff that follows it is recorded on it
    pending: AttemptValues | None = None  # the next attempt, already recorded as started
    made: int = 0  # attempts made by this call


@dataclass(frozen=True)
class _Outcome:
    raw: str | None = None
    parsed: Any = None
    model_used: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class StepSuccess:
    """A step's validated output and its successful attempt, not yet saved: the engine records the
    attempt's end and the step's result in one transaction."""

    output: Any
    attempt: AttemptValues
    spent: float  # the run's cost including this attempt


class StepCaller:
    """Calls a step's model or tool until it succeeds, fails for good, or runs out of attempts.

    Every attempt is recorded as started before its call (riding the transaction that started the
    step, or the one that recorded the previous attempt's backoff), so a crash mid-call leaves it on
    record and the attempt limit holds across restarts: `used` counts what each target already spent.
    """

    def __init__(
        self, lease: Lease, *, delay_scale: float = 1.0, secrets: Mapping[str, str] | None = None,
        fetch_policy: FetchPolicy | None = None, mock: bool = False,
    ) -> None:
        self.lease = lease
        self.mock = mock  # answer every model step from its contract (agents.mock_output), calling no provider
        self.delay_scale = delay_scale  # tests shrink backoff waits through this, not by patching
        self.secrets = dict(secrets or {})  # what api_key_env names resolve to
        self.fetch_policy = fetch_policy or FetchPolicy()

    def first_attempt(
        self, run_id: str, spec: WorkflowSpec, step: ModelStep | ToolStep, call_input: Any, *,
        attempts_so_far: int, spent: float, used: Mapping[int, int] | None = None,
    ) -> AttemptValues:
        """The row of the step's next attempt, for the caller to record as started with the step's start.

        Raises BudgetExceeded when the call would break the budget, AttemptsSpent when none is left."""
        fallback_index, target = self._next_target(step, used or {})
        state = _StepState(run_id=run_id, number=attempts_so_far, spent=spent)
        return self._start_row(state, spec, step, call_input, target, fallback_index, (used or {}).get(fallback_index, 0) + 1)

    @tracing.traced_step
    async def call(
        self, run_id: str, spec: WorkflowSpec, step: ModelStep | ToolStep, call_input: Any, *, attempts_so_far: int,
        spent: float, used: Mapping[int, int] | None = None, started: AttemptValues | None = None,
    ) -> StepSuccess:
        """The step's validated output, or a StepError saying why there is none. `started` is the first
        attempt's row if the caller already recorded it (first_attempt)."""
        state = _StepState(run_id=run_id, number=attempts_so_far, spent=spent, pending=started)
        used = used or {}
        targets = self._targets(step)
        last: StepError | None = None
        for fallback_index, target in enumerate(targets):
            left = step.retry.attempts - used.get(fallback_index, 0)
            if left <= 0:
                continue
            try:
                return await self._call_target(state, spec, step, call_input, target, fallback_index, left, used.get(fallback_index, 0))
            except StepError as exc:
                if not exc.transient:
                    raise
                last = exc
                if fallback_index + 1 < len(targets):
                    log.warning("step.fallback", model=target, next_model=targets[fallback_index + 1])
        tried = f" and its fallbacks ({', '.join(targets[1:])})" if len(targets) > 1 else ""
        total = attempts_so_far + state.made
        if last is None:
            raise AttemptsSpent(f"no attempts left: {total} made of {targets[0]}{tried} (the last was interrupted)")
        raise type(last)(f"gave up after {total} attempts of {targets[0]}{tried}: {last}")

    @staticmethod
    def _targets(step: ModelStep | ToolStep) -> list[str]:
        return [step.model, *step.fallbacks] if isinstance(step, ModelStep) else [step.tool]

    def _next_target(self, step: ModelStep | ToolStep, used: Mapping[int, int]) -> tuple[int, str]:
        for fallback_index, target in enumerate(self._targets(step)):
            if used.get(fallback_index, 0) < step.retry.attempts:
                return fallback_index, target
        raise AttemptsSpent(f"no attempts left of {self._targets(step)[0]} (the last was interrupted)")

    async def _call_target(
        self, state: _StepState, spec: WorkflowSpec, step: ModelStep | ToolStep, call_input: Any, target: str,
        fallback_index: int, left: int, made_before: int,
    ) -> Any:
        model_attempt = made_before

        async def before_sleep(retry_state: RetryCallState) -> None:
            delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
            upcoming = self._start_row(state, spec, step, call_input, target, fallback_index, model_attempt + 1)
            await self._record_backoff(state, delay, upcoming)
            log.info("step.retry_scheduled", model=target, retry_num=retry_state.attempt_number, delay_s=round(delay, 3),
                     caused_by=type(retry_state.outcome.exception()).__name__ if retry_state.outcome else None)

        async for attempt in retrying(step.retry, scale=self.delay_scale, attempts=left, before_sleep=before_sleep,
                                      sleep=wait_out):
            with attempt:
                model_attempt += 1
                row, state.pending = state.pending, None
                if row is None or row.fallback_index != fallback_index:
                    row = self._start_row(state, spec, step, call_input, target, fallback_index, model_attempt)
                    await self.lease.commit(state.run_id, [self.lease.fence_step(state.run_id, step.name),
                                                           driver_queries.attempt_start_write(row)])
                state.number = row.number
                state.made += 1
                structlog.contextvars.bind_contextvars(attempt=row.number)
                return await self._attempt(state, step, row)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _messages(self, step: ModelStep, call_input: dict[str, Any], feedback: list[dict[str, str]]) -> list[dict[str, str]]:
        system = "\n\n".join(p for p in (call_input.get("system"), contract_instructions(step.output)) if p)
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": str(call_input.get("prompt", ""))})
        return messages + revision_messages(call_input) + feedback

    def _start_row(
        self, state: _StepState, spec: WorkflowSpec, step: ModelStep | ToolStep, call_input: Any, target: str,
        fallback_index: int, model_attempt: int,
    ) -> AttemptValues:
        """The next attempt as recorded before its call: what it will be called with (budget checked)."""
        if isinstance(step, ModelStep):
            messages = self._messages(step, call_input, state.feedback)
            self._check_budget(state, spec, target, messages, step.max_tokens)
            recorded: Any = {"model": target, "messages": messages}
        else:
            recorded = {"tool": target, "args": call_input}
        return AttemptValues(
            run_id=state.run_id, step=step.name, number=state.number + 1, model=target, fallback_index=fallback_index,
            model_attempt=model_attempt, input=recorded, started_at=self.lease.clock(), status=AttemptStatus.STARTED,
            workflow=spec.name,
        )

    @tracing.traced_attempt
    async def _attempt(self, state: _StepState, step: ModelStep | ToolStep, row: AttemptValues) -> Any:
        started = time.perf_counter()
        outcome = _Outcome()
        try:
            if isinstance(step, ModelStep):
                result = await self._complete(step, str(row.model), row.input["messages"])
                outcome = _Outcome(raw=result.content, model_used=result.model_used, tokens_in=result.tokens_in,
                                   tokens_out=result.tokens_out, cost_usd=result.cost_usd)
                parsed = check_output(step.output, result.content)
            else:
                value = await call_tool(str(row.model), row.input["args"], timeout=step.timeout, fetch_policy=self.fetch_policy)
                outcome = _Outcome(raw=value if isinstance(value, str) else None, model_used=row.model)
                parsed = check_output(step.output, value)
                if outcome.raw is None:
                    outcome = _Outcome(raw=as_text(value, indent=None), model_used=row.model)
        except StepError as exc:
            if waits_too_long(exc, step.retry):
                exc = type(exc)(f"{exc} (the server asked to wait {exc.retry_after:g}s, more than this step's "
                                f"max_delay of {step.retry.max_delay:g}s: not waiting)", retry_after=exc.retry_after)
            if isinstance(exc, BadOutput) and isinstance(step, ModelStep):
                state.feedback = [
                    {"role": "assistant", "content": outcome.raw or ""},
                    {"role": "user", "content": f"Your answer broke the output contract: {exc}. Answer again, correctly."},
                ]
            await self._record_failure(state, step, _ended(row, outcome, started, exc))
            raise exc from None
        done = _ended(row, _Outcome(outcome.raw, parsed, outcome.model_used, outcome.tokens_in, outcome.tokens_out,
                                    outcome.cost_usd), started, None)
        return StepSuccess(output=parsed, attempt=done, spent=state.spent + done.cost_usd)

    async def _complete(self, step: ModelStep, target: str, messages: list[dict[str, str]]) -> model_call.ModelResult:
        api_key = self.secrets.get(step.api_key_env) if step.api_key_env else None
        try:
            # The hard stop: litellm's own timeout does not cover every stage of a call.
            async with asyncio.timeout(step.timeout + 1):
                return await model_call.complete(
                    target, messages, timeout=step.timeout, api_base=step.api_base, api_key=api_key,
                    key_env=step.api_key_env, temperature=step.temperature, max_tokens=step.max_tokens,
                    mock=mock_output.answer_for(step) if self.mock else None,
                )
        except TimeoutError as exc:
            raise CallTimeout(f"{target} did not answer within {step.timeout:g}s") from exc

    def _check_budget(self, state: _StepState, spec: WorkflowSpec, target: str, messages: list[dict[str, str]], max_tokens: int | None) -> None:
        if spec.budget_usd is None or self.mock:  # a mock answer costs nothing
            return
        estimate = model_call.estimate_cost(target, messages, max_tokens)
        if state.spent + estimate > spec.budget_usd:
            raise BudgetExceeded(
                f"budget of ${spec.budget_usd:.4f} would be exceeded: ${state.spent:.4f} spent, "
                f"the next call to {target} costs about ${estimate:.4f}"
            )

    async def _record_failure(self, state: _StepState, step: ModelStep | ToolStep, row: AttemptValues) -> None:
        """One fenced transaction: the attempt, its cost on the run and the step, and its announcement."""
        failed = outbox.AttemptFailed(
            step=step.name, attempt=row.number, model=row.model, error_type=row.error_type,
            error=(row.error_message or "")[:500],
        )
        await self.lease.commit(state.run_id, [
            self.lease.fence_charge(state.run_id, row, step=step.name),
            driver_queries.attempt_end_write(row),
            driver_queries.attempt_failed_write(run_id=state.run_id, step=step.name, attempt=row),
            outbox.message(state.run_id, failed),
        ])
        state.last_failed = row
        state.spent += row.cost_usd
        log.warning("step.attempt_failed", model=row.model, error_type=row.error_type,
                    error=(row.error_message or "")[:300], latency_ms=round(row.latency_ms, 1))

    async def _record_backoff(self, state: _StepState, delay: float, upcoming: AttemptValues) -> None:
        """The wait after the last failed attempt, and the next attempt recorded as started, together."""
        row = state.last_failed
        writes = [self.lease.fence_step(state.run_id, upcoming.step), driver_queries.attempt_start_write(upcoming)]
        if row is not None:
            writes.append(driver_queries.backoff_write(run_id=row.run_id, step=row.step, number=row.number, delay_s=delay))
        await self.lease.commit(state.run_id, writes)
        state.pending = upcoming


def _ended(row: AttemptValues, outcome: _Outcome, started: float, error: StepError | None) -> AttemptValues:
    """A started attempt's row with how it ended."""
    return replace(
        row, status=AttemptStatus.FAILED if error else AttemptStatus.SUCCEEDED, model_used=outcome.model_used,
        raw_output=outcome.raw, parsed_output=outcome.parsed if error is None else None,
        error_type=type(error).__name__ if error else None, error_message=str(error) if error else None,
        tokens_in=outcome.tokens_in, tokens_out=outcome.tokens_out, cost_usd=outcome.cost_usd,
        latency_ms=(time.perf_counter() - started) * 1000,
    )
