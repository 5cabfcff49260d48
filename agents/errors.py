"""The typed errors of Overseer; each surface (Slack, CLI) translates them for people in one place."""

from __future__ import annotations


class OverseerError(Exception):
    """Base of every error Overseer raises on purpose. `code` is stable; `str()` is for people."""

    code = "overseer_error"


# --- bad input: a clear message, nothing changed ------------------------------------------------


class UserInputError(OverseerError):
    """Something a person typed or wrote is wrong; nothing was changed."""

    code = "bad_input"


class SpecError(UserInputError):
    """A workflow spec does not load: names the file, the step and the field."""

    code = "bad_spec"


class UnknownWorkflow(UserInputError):
    code = "unknown_workflow"


class InvalidInputs(UserInputError):
    """Run inputs are missing, unknown or of the wrong type."""

    code = "bad_inputs"


class UnknownRun(UserInputError):
    code = "unknown_run"


class ContractViolation(UserInputError):
    """An output (a model's, or a human's edit) breaks the step's output contract."""

    code = "contract_violation"


class NotAllowed(UserInputError):
    """The person may not do this (start a workflow, decide a checkpoint)."""

    code = "not_allowed"


class InvalidState(UserInputError):
    """The run is not in a state where this makes sense (e.g. retrying a run that succeeded)."""

    code = "invalid_state"


class AlreadyDecided(InvalidState):
    """Someone decided this checkpoint first."""

    code = "already_decided"

    def __init__(self, message: str, *, decided_by: str, action: str) -> None:
        super().__init__(message)
        self.decided_by = decided_by
        self.action = action


class StaleVersion(InvalidState):
    """A click on a checkpoint version that is no longer the one waiting: it decides nothing."""

    code = "stale_version"

    def __init__(self, message: str, *, shown: int, current: int) -> None:
        super().__init__(message)
        self.shown = shown
        self.current = current


class DatabaseUnavailable(OverseerError):
    code = "database_unavailable"


class ConfigError(OverseerError):
    """A setting is missing or malformed; names the setting."""

    code = "bad_config"


# --- step failures: how a model or tool call went wrong -----------------------------------------


class StepError(OverseerError):
    """A step's call failed. `transient` says whether trying again may help."""

    code = "step_failed"
    transient = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(StepError):
    """Timeouts, dropped connections, 429, 5xx: worth another attempt."""

    code = "transient"
    transient = True


class RateLimited(TransientError):
    code = "rate_limited"


class CallTimeout(TransientError):
    code = "timeout"


class BadOutput(TransientError):
    """Output that breaks the step's contract: unparseable, off-schema or empty. Retried with feedback."""

    code = "bad_output"

    def __init__(self, message: str, *, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class PermanentError(StepError):
    """400, 401, 403, 404, refusals, broken templates: trying again cannot help."""

    code = "permanent"


class ContentRefused(PermanentError):
    code = "content_refused"


class MissingCredentials(PermanentError):
    """The model's API key is not set, or the provider refused it: the message names the variable."""

    code = "missing_credentials"


class BudgetExceeded(PermanentError):
    code = "budget_exceeded"


class TemplateFailure(PermanentError):
    code = "template_error"


class AttemptsSpent(PermanentError):
    """A step resumed after a crash has no attempts left: the last one was cut off mid-call."""

    code = "attempts_spent"


class Crashed(PermanentError):
    """The run's driver died with it too often: it fails instead of being taken over once more."""

    code = "crashed"


class ToolNotFound(PermanentError):
    code = "tool_not_found"


class FetchRefused(PermanentError):
    """fetch_page will not go there: a non-public address, another scheme, credentials, a binary type."""

    code = "fetch_refused"
