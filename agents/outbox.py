"""What the engine announces: one frozen dataclass per kind, written and read through the same type.

An announcement is written in the transaction of the state change it reports (`message` for a batch of
Core writes, `announce` inside an open session), and read back with `read`; no other code builds or
indexes an outbox payload by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox_queries
from storage.db import Write, run_writes


class UnknownKind(ValueError):
    """An outbox row of a kind this version does not know (written by a newer one, or by hand)."""


@dataclass(frozen=True)
class Announcement:
    """Base of every kind; `kind` is the stable name stored in the outbox row."""

    kind: ClassVar[str]

    def payload(self) -> dict[str, Any]:
        """The JSON stored in the outbox row."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        """Read a stored payload back; keys this version does not know are ignored, missing ones default."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in known})


@dataclass(frozen=True)
class RunStarted(Announcement):
    kind: ClassVar[str] = "run_started"
    workflow: str
    started_by: str
    trigger: str
    inputs: dict[str, Any]
    steps: list[str]
    mocked: bool = False  # no provider answers its model steps


@dataclass(frozen=True)
class StepStarted(Announcement):
    kind: ClassVar[str] = "step_started"
    step: str
    step_kind: str


@dataclass(frozen=True)
class AttemptFailed(Announcement):
    kind: ClassVar[str] = "attempt_failed"
    step: str
    attempt: int
    model: str | None
    error_type: str | None
    error: str


@dataclass(frozen=True)
class StepSucceeded(Announcement):
    kind: ClassVar[str] = "step_succeeded"
    step: str


@dataclass(frozen=True)
class CheckpointWaiting(Announcement):
    kind: ClassVar[str] = "checkpoint_waiting"
    step: str
    output: Any
    format: str
    approvers: list[str]
    version: int = 1  # what its buttons carry; a click on an older version decides nothing


@dataclass(frozen=True)
class CheckpointDecided(Announcement):
    kind: ClassVar[str] = "checkpoint_decided"
    step: str
    action: str
    by: str
    at: str  # ISO time
    reason: str | None = None
    chars_changed: int = 0
    chars_total: int = 0
    version: int = 1
    approvers: list[str] = field(default_factory=list)  # everyone whose approval counted, with several


@dataclass(frozen=True)
class CheckpointApproved(Announcement):
    """One approval of several needed: the run waits on for the rest."""

    kind: ClassVar[str] = "checkpoint_approved"
    step: str
    version: int
    by: str
    approvers: list[str]
    needed: int


@dataclass(frozen=True)
class CheckpointRevising(Announcement):
    """A version sent back with a note: the step runs again, and the next version replaces it."""

    kind: ClassVar[str] = "checkpoint_revising"
    step: str
    version: int  # the version revised
    by: str
    note: str
    at: str  # ISO time


@dataclass(frozen=True)
class CheckpointReminder(Announcement):
    kind: ClassVar[str] = "checkpoint_reminder"
    step: str
    mention: list[str]
    waiting_s: float
    timeout_s: float | None = None


@dataclass(frozen=True)
class CheckpointEscalated(Announcement):
    kind: ClassVar[str] = "checkpoint_escalated"
    step: str
    mention: list[str]
    approvers: list[str]
    on_timeout: str
    waiting_s: float


@dataclass(frozen=True)
class AttemptSummary:
    """One attempt as a failure report lists it."""

    number: int
    model: str | None
    at: str  # ISO time
    error_type: str | None = None
    error: str | None = None
    fallback_index: int = 0
    backoff_s: float | None = None
    latency_ms: float = 0.0


@dataclass(frozen=True)
class StepFailed(Announcement):
    kind: ClassVar[str] = "step_failed"
    step: str
    step_kind: str
    error: str
    error_type: str
    retried: bool
    input: Any
    attempts: list[AttemptSummary] = field(default_factory=list)
    last_raw_output: str | None = None

    def payload(self) -> dict[str, Any]:
        """The JSON stored in the outbox row (attempts as plain objects)."""
        return {**super().payload(), "attempts": [dataclasses.asdict(a) for a in self.attempts]}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        """Read a stored payload back, attempts included."""
        known = {f.name for f in dataclasses.fields(AttemptSummary)}
        attempts = [AttemptSummary(**{k: v for k, v in a.items() if k in known}) for a in payload.get("attempts") or []]
        return dataclasses.replace(super().from_payload({**payload, "attempts": []}), attempts=attempts)


@dataclass(frozen=True)
class RunRetried(Announcement):
    kind: ClassVar[str] = "run_retried"
    step: str
    by: str
    edited_input: bool = False


@dataclass(frozen=True)
class RunFinished(Announcement):
    kind: ClassVar[str] = "run_finished"
    status: str
    cost_usd: float = 0.0
    by: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class DigestReady(Announcement):
    """The daily digest (agents.digest.Digest.to_payload()) for one channel; stored flat."""

    kind: ClassVar[str] = "digest"
    channel: str
    report: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        """The report's fields and the channel, side by side."""
        return {**self.report, "channel": self.channel}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        """Split the channel from the report."""
        report = {k: v for k, v in payload.items() if k != "channel"}
        return cls(channel=str(payload.get("channel") or ""), report=report)


@dataclass(frozen=True)
class StartConfirmed(Announcement):
    """The private "your run started" for whoever started it from chat: delivered, and retried while
    chat is away, like every announcement (written in the run's own transaction, in a stream of its own)."""

    kind: ClassVar[str] = "start_confirmed"
    user: str
    workflow: str
    channel: str | None = None  # where they asked
    follow_in: str | None = None  # where the run is announced
    reply_url: str | None = None  # the request's own reply address, for where the bot may not post

    def stream(self, run_id: str) -> str:
        """Its stream: not behind the run's announcements."""
        return f"confirm:{run_id}"


KINDS: dict[str, type[Announcement]] = {
    cls.kind: cls
    for cls in (
        RunStarted, StepStarted, AttemptFailed, StepSucceeded, CheckpointWaiting, CheckpointDecided,
        CheckpointApproved, CheckpointRevising, CheckpointReminder, CheckpointEscalated, StepFailed, RunRetried, RunFinished, DigestReady, StartConfirmed,
    )
}
# Kinds that only move the run's parent message (a surface may coalesce consecutive ones).
PARENT_ONLY = frozenset({StepStarted.kind, AttemptFailed.kind, StepSucceeded.kind})


def read(kind: str, payload: Mapping[str, Any]) -> Announcement:
    """The one way to read an outbox row: its typed announcement, or UnknownKind."""
    cls = KINDS.get(kind)
    if cls is None:
        raise UnknownKind(f"unknown announcement kind {kind!r}")
    return cls.from_payload(payload)


def message(run_id: str | None, *announcements: Announcement, stream: str | None = None) -> Write:
    """The one way to write announcements: a Core write, in order, for the caller's transaction."""
    return outbox_queries.outbox_write([(run_id, a.kind, a.payload(), stream) for a in announcements])


async def announce(session: AsyncSession, run_id: str | None, *announcements: Announcement, stream: str | None = None) -> None:
    """Write announcements now, in the caller's open transaction (`message` run at once)."""
    await run_writes(session, [message(run_id, *announcements, stream=stream)])


def summaries(attempts: Sequence[Any]) -> list[AttemptSummary]:
    """Recorded attempts (storage rows) as a failure report lists them."""
    return [
        AttemptSummary(
            number=a.number, model=a.model, fallback_index=a.fallback_index, at=a.started_at.isoformat(),
            error_type=a.error_type, error=(a.error_message or "")[:500] or None, backoff_s=a.backoff_s,
            latency_ms=round(a.latency_ms, 1),
        )
        for a in attempts
    ]
