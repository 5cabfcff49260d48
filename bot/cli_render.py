"""How the CLI shows runs, attempts and progress: plain text for people, JSON for scripts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TextIO

from agents import outbox
from agents.text import as_text
from bot.format import MOCK_NOTE, duration, money, span, step_icon
from storage.models import Attempt, Decision, OutboxMessage, Run, StepRun
from storage.status import Action, StepStatus


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_dict(run: Run) -> dict[str, Any]:
    """A run as JSON-ready data."""
    return {
        "id": run.id, "workflow": run.workflow, "status": run.status, "started_by": run.started_by,
        "trigger": run.trigger, "inputs": run.inputs, "current_step": run.current_step, "error": run.error,
        "created_at": _ts(run.created_at), "started_at": _ts(run.started_at), "finished_at": _ts(run.finished_at),
        "tokens_in": run.tokens_in, "tokens_out": run.tokens_out, "cost_usd": run.cost_usd, "mocked": run.mocked,
    }


def attempt_dict(a: Attempt) -> dict[str, Any]:
    """An attempt as JSON-ready data: everything that was recorded."""
    return {
        "step": a.step, "number": a.number, "model": a.model, "fallback_index": a.fallback_index,
        "model_attempt": a.model_attempt, "model_used": a.model_used, "input": a.input, "raw_output": a.raw_output,
        "parsed_output": a.parsed_output, "error_type": a.error_type, "error": a.error_message,
        "tokens_in": a.tokens_in, "tokens_out": a.tokens_out, "cost_usd": a.cost_usd,
        "latency_ms": round(a.latency_ms, 2), "backoff_s": a.backoff_s, "started_at": _ts(a.started_at),
    }


def decision_dict(d: Decision) -> dict[str, Any]:
    """A checkpoint decision as JSON-ready data."""
    return {
        "step": d.step, "action": d.action, "decided_by": d.decided_by, "decided_at": _ts(d.decided_at),
        "reason": d.reason, "original_output": d.original_output, "edited_output": d.edited_output,
        "chars_changed": d.chars_changed,
    }


def print_runs(runs: list[Run], out: TextIO) -> None:
    """A table of runs, newest first."""
    if not runs:
        print("no runs recorded yet", file=out)
        return
    print(f"{'RUN':<13} {'WORKFLOW':<22} {'STATUS':<18} {'STARTED BY':<14} {'CREATED (UTC)':<17} {'TIME':>7} {'COST':>9}", file=out)
    for r in runs:
        print(
            f"{r.id:<13} {r.workflow[:22]:<22} {_status(r):<18} {r.started_by[:14]:<14} "
            f"{r.created_at:%Y-%m-%d %H:%M} {span(r.started_at, r.finished_at):>7} {money(r.cost_usd):>9}",
            file=out,
        )


def _status(run: Run) -> str:
    return f"{run.status} (mock)" if run.mocked else run.status


def _block(label: str, value: Any, out: TextIO, indent: str = "      ") -> None:
    if value is None or value == "":
        return
    print(f"{indent}{label}:", file=out)
    for line in as_text(value).splitlines() or [""]:
        print(f"{indent}  {line}", file=out)


def print_run(run: Run, steps: list[StepRun], attempts: list[Attempt], decisions: list[Decision], out: TextIO) -> None:
    """One run with every step and every attempt: input, output, error, tokens, cost, latency."""
    print(f"run {run.id} · {run.workflow} · {run.status}{' · ' + MOCK_NOTE if run.mocked else ''}", file=out)
    print(f"  started by {run.started_by} ({run.trigger}) at {run.created_at:%Y-%m-%d %H:%M:%S} UTC", file=out)
    print(f"  inputs: {as_text(run.inputs, indent=None)}", file=out)
    print(f"  tokens {run.tokens_in} in / {run.tokens_out} out · cost {money(run.cost_usd, 6)} · "
          f"duration {span(run.started_at, run.finished_at)}", file=out)
    if run.error:
        print(f"  error: {run.error}", file=out)
    by_step: dict[str, list[Attempt]] = {}
    for a in attempts:
        by_step.setdefault(a.step, []).append(a)
    decided = {d.step: d for d in decisions}
    for s in steps:
        print(f"\n  {step_icon(s.status)} {s.step} [{s.status}] attempts {s.attempts} · {money(s.cost_usd, 6)}", file=out)
        for a in by_step.get(s.step, []):
            outcome = f"{a.error_type}: {a.error_message}" if a.error_type else "ok"
            wait = f" · then waited {duration(a.backoff_s)}" if a.backoff_s is not None else ""
            print(f"    #{a.number} {a.model} ({a.model_used or '-'}) {a.latency_ms:.0f} ms · "
                  f"{a.tokens_in}/{a.tokens_out} tokens · {money(a.cost_usd, 6)} · {outcome}{wait}", file=out)
            _block("input", a.input, out)
            _block("output", a.raw_output, out)
        if s.step in decided:
            d = decided[s.step]
            extra = f" ({d.chars_changed} chars changed)" if d.action == Action.EDIT else ""
            reason = f": {d.reason}" if d.reason else ""
            print(f"    decision: {d.action} by {d.decided_by} at {d.decided_at:%Y-%m-%d %H:%M:%S}{extra}{reason}", file=out)


def progress_line(message: OutboxMessage) -> str | None:
    """One line of live progress for an announcement, or None for ones not worth a line."""
    try:
        a = outbox.read(message.kind, message.payload)
    except outbox.UnknownKind:
        return None
    match a:
        case outbox.RunStarted():
            return f"run {message.run_id} · {a.workflow} · started by {a.started_by}{' · ' + MOCK_NOTE if a.mocked else ''}"
        case outbox.StepStarted():
            return f"  {step_icon(StepStatus.RUNNING)} {a.step} …"
        case outbox.AttemptFailed():
            return f"  {step_icon(StepStatus.FAILED)} {a.step} attempt {a.attempt} ({a.model}): {a.error_type}: {a.error[:200]}"
        case outbox.StepSucceeded():
            return f"  {step_icon(StepStatus.SUCCEEDED)} {a.step}"
        case outbox.CheckpointWaiting():
            return f"  {step_icon(StepStatus.AWAITING_APPROVAL)} {a.step} waits for approval"
        case outbox.CheckpointDecided():
            reason = f": {a.reason}" if a.reason else ""
            return f"  → {a.step}: {a.action} by {a.by}{reason}"
        case outbox.CheckpointApproved():
            return f"  → {a.step} v{a.version}: {len(a.approvers)} of {a.needed} approved, by {', '.join(a.approvers)}"
        case outbox.CheckpointRevising():
            return f"  ↻ {a.step} v{a.version} sent back by {a.by}: {a.note[:200]}"
        case outbox.StepFailed():
            return _failure_lines(a)
        case outbox.RunRetried():
            return f"  ↻ retrying from {a.step} (by {a.by})"
        case outbox.RunFinished():
            return f"run {message.run_id} {a.status} · {money(a.cost_usd)}"
        case outbox.CheckpointReminder() | outbox.CheckpointEscalated():
            return f"  ! {a.step}: {a.kind.replace('_', ' ')}"
    return None


def _failure_lines(failed: outbox.StepFailed) -> str:
    lines = [f"  {step_icon(StepStatus.FAILED)} {failed.step} failed: {failed.error}"]
    if failed.input is not None:
        lines.append("    the step's input was:")
        lines.extend(f"      {line}" for line in as_text(failed.input).splitlines()[:40])
    return "\n".join(lines)


def result_lines(outputs: dict[str, Any]) -> list[str]:
    """A run's result as people read it: each output under its step's name, an object's fields one a line."""
    lines: list[str] = []
    for step, value in outputs.items():
        lines += [f"── result: {step} ──", *_value_lines(value), ""]
    return lines


def _value_lines(value: Any) -> list[str]:
    if not isinstance(value, dict) or not value:
        return as_text(value).splitlines() or [""]
    lines = []
    for key, item in value.items():
        if isinstance(item, str) and "\n" in item:
            lines += [f"{key}:", *(f"  {line}" for line in item.splitlines())]
        else:
            lines.append(f"{key}: {item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)}")
    return lines


def result_dict(run: Run, outputs: dict[str, Any]) -> dict[str, Any]:
    """What `run --output json` prints: the run id, its status and its result's outputs (for scripts)."""
    return {"run_id": run.id, "workflow": run.workflow, "status": run.status, "mocked": run.mocked,
            "cost_usd": run.cost_usd, "error": run.error, "outputs": outputs}


def print_outputs(outputs: dict[str, Any], out: TextIO) -> None:
    """`show RUN --output`: one output as it is (text, or indented JSON), several each under its step's name."""
    if len(outputs) == 1:
        print(as_text(next(iter(outputs.values()))), file=out)
        return
    for line in result_lines(outputs):
        print(line, file=out)
