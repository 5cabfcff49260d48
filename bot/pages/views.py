"""What the run pages show, read from the database and turned into redacted text (no HTML here)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.format import UNKNOWN, decision, duration, money, readable, run_state, span, step_icon
from storage import run_queries
from storage.db import Database
from storage.models import Attempt, Decision, Run, StepRun
from storage.status import RunStatus

Redact = Callable[[str], str]


def identity(text: str) -> str:
    """No redaction (the default until a redactor is wired in)."""
    return text


def when(value: datetime | None) -> str:
    """A UTC time to the second, or – when unknown."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else UNKNOWN


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff: `kind` is add, del, hunk or same."""

    kind: str
    text: str


@dataclass(frozen=True)
class AttemptView:
    """One call of a model or tool as the page shows it."""

    number: int
    status: str
    model: str
    started: str
    input: str
    raw_output: str
    parsed_output: str
    error: str
    tokens: str
    cost: str
    latency: str
    backoff: str


@dataclass(frozen=True)
class DecisionView:
    """A checkpoint's decision as the page shows it."""

    action: str
    by: str
    at: str
    wait: str
    reason: str
    diff: list[DiffLine]
    chars: str


@dataclass(frozen=True)
class StepView:
    """One step and what happened in it."""

    name: str
    icon: str
    status: str
    took: str
    cost: str
    input: str
    output: str
    error: str
    attempts: list[AttemptView]
    decision: DecisionView | None  # the checkpoint's, once decided


@dataclass(frozen=True)
class RunView:
    """The page of one run."""

    id: str
    workflow: str
    state: str
    status: str
    started_by: str
    trigger: str
    created: str
    took: str
    cost: str
    tokens: str
    inputs: str
    error: str
    steps: list[StepView]


@dataclass(frozen=True)
class RunRow:
    """One run in the list of recent runs."""

    id: str
    workflow: str
    state: str
    started_by: str
    created: str
    cost: str


def diff_lines(before: Any, after: Any, redact: Redact = identity) -> list[DiffLine]:
    """The unified diff of two outputs as a person reads them (redacted before comparing)."""
    lines = difflib.unified_diff(redact(readable(before)).splitlines(), redact(readable(after)).splitlines(),
                                 "model output", "edited output", lineterm="")
    kinds = {"+": "add", "-": "del", "@": "hunk"}
    return [DiffLine("hunk" if i < 2 else kinds.get(line[:1], "same"), line) for i, line in enumerate(lines)]


def attempt_view(attempt: Attempt, redact: Redact) -> AttemptView:
    """One attempt: what was sent, what came back, what it cost."""
    model = attempt.model or UNKNOWN
    if attempt.model_used and attempt.model_used != attempt.model:
        model = f"{model} (answered by {attempt.model_used})"
    error = ": ".join(p for p in (attempt.error_type, attempt.error_message) if p)
    return AttemptView(
        number=attempt.number, status=redact(str(attempt.status)), model=redact(model), started=when(attempt.started_at),
        input=redact(readable(attempt.input)), raw_output=redact(attempt.raw_output or ""),
        parsed_output=redact(readable(attempt.parsed_output)), error=redact(error),
        tokens=f"{attempt.tokens_in} in · {attempt.tokens_out} out", cost=money(attempt.cost_usd),
        latency=duration(attempt.latency_ms / 1000), backoff=duration(attempt.backoff_s) if attempt.backoff_s else "",
    )


def decision_view(found: Decision, redact: Redact) -> DecisionView:
    """A checkpoint's decision, with the diff of the edit when there was one."""
    diff = diff_lines(found.original_output, found.edited_output, redact) if found.edited_output is not None else []
    chars = f"{found.chars_changed} of {found.chars_total} characters changed" if diff else ""
    return DecisionView(action=redact(decision(found.action)), by=redact(found.decided_by), at=when(found.decided_at),
                        wait=duration(found.wait_s), reason=redact(found.reason or ""), diff=diff, chars=chars)


def step_view(step: StepRun, attempts: Sequence[Attempt], found: Decision | None, redact: Redact) -> StepView:
    """One step with its attempts and its decision."""
    return StepView(
        name=redact(step.step), icon=step_icon(step.status), status=redact(step.status),
        took=span(step.started_at, step.finished_at), cost=money(step.cost_usd),
        input=redact(readable(step.input_override if step.input_override is not None else step.input)),
        output=redact(readable(step.output)), error=redact(step.error or ""),
        attempts=[attempt_view(a, redact) for a in attempts], decision=decision_view(found, redact) if found else None,
    )


def run_view(run: Run, steps: Sequence[StepRun], attempts: Sequence[Attempt], decisions: Sequence[Decision],
             redact: Redact = identity) -> RunView:
    """A whole run: who started it, what it cost, and its timeline of steps."""
    by_step: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_step.setdefault(attempt.step, []).append(attempt)
    decided = {d.step: d for d in decisions}
    error = run.error if run.error and run.status != RunStatus.SUCCEEDED else ""
    return RunView(
        id=run.id, workflow=redact(run.workflow), state=redact(run_state(run.status)), status=redact(run.status),
        started_by=redact(run.started_by), trigger=redact(run.trigger), created=when(run.created_at),
        took=span(run.started_at, run.finished_at), cost=money(run.cost_usd),
        tokens=f"{run.tokens_in} in · {run.tokens_out} out", inputs=redact(readable(run.inputs or {})), error=redact(error),
        steps=[step_view(s, by_step.get(s.step, []), decided.get(s.step), redact) for s in steps],
    )


def run_row(run: Run, redact: Redact = identity) -> RunRow:
    """One line of the list of runs."""
    return RunRow(id=run.id, workflow=redact(run.workflow), state=redact(run_state(run.status)),
                  started_by=redact(run.started_by), created=when(run.created_at), cost=money(run.cost_usd))


async def load_run(db: Database, run_id: str, redact: Redact = identity) -> RunView | None:
    """The page of one run, or None when there is no such run."""
    async with db.sessions() as session:
        run = await run_queries.get_run(session=session, run_id=run_id)
        if run is None:
            return None
        steps = await run_queries.step_runs(session=session, run_id=run_id)
        attempts = await run_queries.attempts(session=session, run_id=run_id)
        decisions = await run_queries.decisions(session=session, run_id=run_id)
    return run_view(run, steps, attempts, decisions, redact)


async def load_runs(db: Database, *, workflow: str | None, status: str | None, limit: int = 50,
                    redact: Redact = identity) -> list[RunRow]:
    """Recent runs, newest first, optionally of one workflow and one status."""
    async with db.sessions() as session:
        runs = await run_queries.list_runs(session=session, limit=limit, workflow=workflow, status=status)
    return [run_row(r, redact) for r in runs]
