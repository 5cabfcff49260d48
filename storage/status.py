"""The states a run and a step can be in, and what a checkpoint decision does: one spelling each."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run stands."""

    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class StepStatus(StrEnum):
    """Where one step of a run stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    EDITED = "edited"
    REJECTED = "rejected"
    EXPIRED = "expired"


class AttemptStatus(StrEnum):
    """How one call of a model or tool went: recorded as started before the call, ended after it."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process stopped during the call


class Action(StrEnum):
    """A decision at a checkpoint: a person's (approve, edit, reject) or a deadline's (expire)."""

    APPROVE = "approve"
    EDIT = "edit"
    REJECT = "reject"
    EXPIRE = "expire"

    @property
    def past(self) -> str:
        """The decision as a past participle: approved, edited, rejected, expired."""
        return self.step_status.value

    @property
    def step_status(self) -> StepStatus:
        """What the checkpoint's step becomes."""
        return _STEP_AFTER[self]

    @property
    def goes_on(self) -> bool:
        """Whether the run continues after this decision."""
        return self in (Action.APPROVE, Action.EDIT)


_STEP_AFTER = {
    Action.APPROVE: StepStatus.APPROVED, Action.EDIT: StepStatus.EDITED,
    Action.REJECT: StepStatus.REJECTED, Action.EXPIRE: StepStatus.EXPIRED,
}

# A run someone may still drive: queued, or running (under a live or a lapsed lease).
RUNNABLE = (RunStatus.QUEUED, RunStatus.RUNNING)
# A run that is over, whatever came of it.
FINISHED_RUN = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.REJECTED, RunStatus.CANCELLED, RunStatus.EXPIRED)
# A step whose output is final: replayed, never run again.
DONE_STEP = (StepStatus.SUCCEEDED, StepStatus.APPROVED, StepStatus.EDITED)
# A step that may (still or again) be called.
STARTABLE_STEP = (StepStatus.PENDING, StepStatus.RUNNING)
