"""What the engine announces. Each is written in the transaction of the state change it reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage import queries

# The kinds of announcement; the chat side renders each, the CLI prints them.
RUN_STARTED = "run_started"
STEP_STARTED = "step_started"
ATTEMPT_FAILED = "attempt_failed"
STEP_SUCCEEDED = "step_succeeded"
CHECKPOINT_WAITING = "checkpoint_waiting"
CHECKPOINT_DECIDED = "checkpoint_decided"
CHECKPOINT_REMINDER = "checkpoint_reminder"
CHECKPOINT_ESCALATED = "checkpoint_escalated"
STEP_FAILED = "step_failed"
RUN_RETRIED = "run_retried"
RUN_FINISHED = "run_finished"
DIGEST = "digest"

KINDS = (
    RUN_STARTED, STEP_STARTED, ATTEMPT_FAILED, STEP_SUCCEEDED, CHECKPOINT_WAITING, CHECKPOINT_DECIDED,
    CHECKPOINT_REMINDER, CHECKPOINT_ESCALATED, STEP_FAILED, RUN_RETRIED, RUN_FINISHED, DIGEST,
)


def announce(session: AsyncSession, run_id: str | None, kind: str, *, stream: str | None = None, **payload: Any) -> None:
    """Queue an announcement in the caller's transaction."""
    if kind not in KINDS:
        raise ValueError(f"unknown announcement kind {kind!r}")
    queries.add_outbox(session=session, run_id=run_id, kind=kind, payload=payload, stream=stream)
