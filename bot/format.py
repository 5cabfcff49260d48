"""The words and figures people read, spelled once for Slack, the digest and the terminal.

Money, durations, values as text, step and run marks, decision words. Nothing here escapes for Slack
(bot/slack/mrkdwn.py does) or knows a surface's layout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agents.text import as_text
from storage.status import Action, RunStatus, StepStatus

STEP_ICON = {
    StepStatus.PENDING: "·",
    StepStatus.RUNNING: "⟳",
    StepStatus.SUCCEEDED: "✓",
    StepStatus.APPROVED: "✓",
    StepStatus.EDITED: "✓",
    StepStatus.FAILED: "✗",
    StepStatus.AWAITING_APPROVAL: "⏸",
    StepStatus.REJECTED: "✗",
    StepStatus.EXPIRED: "✗",
}
RUN_STATE = {
    RunStatus.QUEUED: "⏳ queued",
    RunStatus.RUNNING: "⟳ running",
    RunStatus.AWAITING_APPROVAL: "⏸ waiting for approval",
    RunStatus.SUCCEEDED: "✓ succeeded",
    RunStatus.FAILED: "✗ failed",
    RunStatus.REJECTED: "✗ rejected",
    RunStatus.CANCELLED: "⊘ cancelled",
    RunStatus.EXPIRED: "✗ expired",
}
UNKNOWN = "–"
MOCK_BADGE = "mock"  # a mocked run's mark, wherever it shows
MOCK_NOTE = "mock: model steps answered from their contracts, no model called"


def money(value: float | None, places: int = 4) -> str:
    """An exact cost: $0.0012 (to `places` decimals); no cost is $0.0000."""
    return f"${value or 0.0:.{places}f}"


def money_short(value: float | None) -> str:
    """A cost in a summary: $1,234.50 from a dollar up (and $0.00), $0.0123 below it; – when unknown."""
    if value is None:
        return UNKNOWN
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:.4f}"


def duration(seconds: float | None) -> str:
    """0.4s under ten seconds, then 1m 30s, 1h 30m, 2d 3h; – when unknown."""
    if seconds is None:
        return UNKNOWN
    if seconds < 10:
        return f"{seconds:.1f}s"
    d, s = divmod(int(round(seconds)), 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def span(start: datetime | None, end: datetime | None) -> str:
    """How long from `start` to `end`, as `duration` says it; – when either is missing."""
    return duration((end - start).total_seconds() if start and end else None)


def readable(value: Any) -> str:
    """A value as a person reads it: nothing for None, else agents.text.as_text (JSON indented)."""
    return "" if value is None else as_text(value)


def step_icon(status: str) -> str:
    """✓, ✗, ⟳, ⏸ or · for a step's status."""
    return STEP_ICON.get(status, STEP_ICON[StepStatus.PENDING])


def run_state(status: str) -> str:
    """A run's status with its mark (✓ succeeded, ⏸ waiting for approval); an unknown one as it is."""
    return RUN_STATE.get(status, status)


def decision(action: str) -> str:
    """✓ Approved, ✎ Edited and approved, ✗ Rejected, ✗ Expired; an unknown action as it is."""
    try:
        act = Action(action)
    except ValueError:
        return action
    if act == Action.EDIT:
        return "✎ Edited and approved"
    return f"{STEP_ICON[act.step_status]} {act.past.capitalize()}"
