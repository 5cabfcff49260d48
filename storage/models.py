"""Typed ORM rows: runs, step results, attempts, decisions, the outbox, and coordination rows."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from storage.clean import CleanJSON, CleanString, CleanText
from storage.status import AttemptStatus, RunStatus, StepStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware UTC datetime, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        # SQLite compares timestamps as text: store them naive so every row sorts alike.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: CleanJSON(), Any: CleanJSON()}


class Run(Base):
    """One execution of a workflow."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(200), index=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the spec as it was at start
    started_by: Mapped[str] = mapped_column(String(200))  # a user id, "cli", or "schedule"
    trigger: Mapped[str] = mapped_column(String(20), default="cli")  # cli | slack | schedule | profile
    status: Mapped[str] = mapped_column(String(30), index=True, default=RunStatus.QUEUED)
    current_step: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(CleanText)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    # Where the chat surface announces this run (a channel and its parent message).
    channel: Mapped[str | None] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(64))
    # Which process is driving the run, until when (replicas take over expired leases).
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    # How often a driver died with this run in its hands; past a limit the run fails instead of looping.
    crashes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A mocked run's model steps were answered from their contracts, by no provider (overseer run --mock).
    mocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("ix_runs_status_lease", "status", "lease_expires_at"),
        # The digest's (storage/digest_queries.py): each covers its queries, so no wide runs row is read.
        Index("ix_runs_finished_at", "finished_at", "workflow", "status", "started_at", "trigger"),
        Index("ix_runs_id_workflow", "id", "workflow"),
        Index("ix_runs_created_workflow", "created_at", "workflow", "trigger"),
        Index("ix_runs_workflow_status_finished", "workflow", "status", "finished_at"),
        Index("ix_runs_trigger", "trigger", "finished_at", "workflow", "status", "id"),
    )


class StepRun(Base):
    """The recorded result of one step of one run: a completed step is never run again."""

    __tablename__ = "step_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    # pending | running | succeeded | failed | awaiting_approval | approved | edited | rejected | expired
    status: Mapped[str] = mapped_column(String(30), default=StepStatus.PENDING)
    input: Mapped[Any] = mapped_column(CleanJSON, nullable=True)
    input_override: Mapped[Any] = mapped_column(CleanJSON, nullable=True)  # a human's edited input
    output: Mapped[Any] = mapped_column(CleanJSON, nullable=True)  # what later steps see
    error: Mapped[str | None] = mapped_column(CleanText)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    awaiting_since: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    retry_base: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # attempts before a human's retry
    # A checkpoint's version: 1 as first shown, +1 for each revision (or, with several approvers, an edit).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    revisions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # Revise rounds used
    # A waiting checkpoint's next deadline (reminder or timeout; agents/deadlines.py sets it): the scan reads
    # only what is due. NULL until the first scan after the checkpoint is posted.
    due_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("run_id", "step"),
        Index("ix_step_runs_status_awaiting", "status", "awaiting_since"),
        Index("ix_step_runs_status_due", "status", "due_at"),
    )


class Attempt(Base):
    """One call of a model or tool, whatever came of it."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(Integer)  # 1-based, across the whole step
    model: Mapped[str | None] = mapped_column(String(200))  # the model or tool asked
    fallback_index: Mapped[int] = mapped_column(Integer, default=0)  # 0 = primary model
    model_attempt: Mapped[int] = mapped_column(Integer, default=1)  # 1-based, per model
    model_used: Mapped[str | None] = mapped_column(CleanString(200))  # as the provider reported
    input: Mapped[Any] = mapped_column(CleanJSON, nullable=True)
    raw_output: Mapped[str | None] = mapped_column(CleanText)
    parsed_output: Mapped[Any] = mapped_column(CleanJSON, nullable=True)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(CleanText)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    backoff_s: Mapped[float | None] = mapped_column(Float)  # the wait that followed, if any
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    # started (recorded before the call) | succeeded | failed | interrupted (the process stopped mid-call)
    status: Mapped[str] = mapped_column(String(20), default=AttemptStatus.SUCCEEDED, server_default=AttemptStatus.SUCCEEDED.value)
    # The run's workflow, copied at insert so the digest groups attempts without a join; NULL: look it up.
    workflow: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_attempts_run_step_number", "run_id", "step", "number"),
        Index("ix_attempts_digest", "workflow", "started_at", "number", "cost_usd"),
    )


class Decision(Base):
    """A human's (or a deadline's) answer at a checkpoint; one per checkpoint, ever."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_run_id: Mapped[int] = mapped_column(
        ForeignKey("step_runs.id", ondelete="CASCADE"), unique=True
    )
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))  # approve | edit | reject | expire
    decided_by: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    original_output: Mapped[Any] = mapped_column(CleanJSON, nullable=True)
    edited_output: Mapped[Any] = mapped_column(CleanJSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(CleanText)
    chars_changed: Mapped[int] = mapped_column(Integer, default=0)
    chars_total: Mapped[int] = mapped_column(Integer, default=0)
    wait_s: Mapped[float] = mapped_column(Float, default=0.0)  # from checkpoint to decision
    # The run's workflow, copied at insert so the digest groups decisions without a join; NULL: look it up.
    workflow: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_decisions_digest", "decided_at", "workflow", "action", "run_id", "decided_by", "wait_s",
              "chars_changed", "chars_total"),
        Index("ix_decisions_workflow_action", "workflow", "action", "decided_at"),
    )


class CheckpointVersion(Base):
    """One version of a checkpoint's output as people saw it, written when it was revised (or superseded
    by an edit) or decided: what it said, the attempts that made it, and the note asking for the next."""

    __tablename__ = "checkpoint_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_run_id: Mapped[int] = mapped_column(ForeignKey("step_runs.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    output: Mapped[Any] = mapped_column(CleanJSON, nullable=True)
    first_attempt: Mapped[int] = mapped_column(Integer, default=1)  # attempts.number range that made it
    last_attempt: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(20))  # revised | edited | approve | edit | reject | expire
    note: Mapped[str | None] = mapped_column(CleanText)  # what the reviser asked for
    by: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (UniqueConstraint("step_run_id", "version"),)


class Approval(Base):
    """One approver's approval of one version of a checkpoint that asks for several (checkpoint.approvals)."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_run_id: Mapped[int] = mapped_column(ForeignKey("step_runs.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    approved_by: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("step_run_id", "version", "approved_by"),)


class Event(Base):
    """Things worth keeping that are not state: refused clicks, reminders, escalations."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_events_kind_at", "kind", "at"),)


class OutboxMessage(Base):
    """Something to announce, written in the transaction of the state change it reports."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    stream: Mapped[str] = mapped_column(String(100))  # delivered in id order within a stream
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    tries: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(CleanText)
    next_try_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None]

    __table_args__ = (Index("ix_outbox_pending", "delivered_at", "stream", "id"),)


class Claim(Base):
    """A once-only key: a schedule tick, a digest, a reminder. Whoever inserts it first owns it."""

    __tablename__ = "claims"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ChatMessage(Base):
    """A message the chat side posted for a run (its parent, a checkpoint, a failure report), by key."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    key: Mapped[str] = mapped_column(String(200))  # e.g. "parent", "checkpoint:draft", "failure:draft:3"
    channel: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    outbox_id: Mapped[int | None] = mapped_column(Integer)  # the announcement it was posted for, if one

    __table_args__ = (UniqueConstraint("run_id", "key"),)
