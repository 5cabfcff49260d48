"""The workflow spec's types: pydantic models, frozen once loaded. Loading them from YAML is agents.loading."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from agents.cron import crontab_trigger

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")
_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names travel in every id a chat surface carries (button values, block and form field ids, file names,
# the run form's fields): short enough that each fits, and so two names never collide once cut.
NAME_LENGTH = 64


def parse_duration(value: Any) -> float:
    """Seconds from 90, "90s", "30m", "4h", "1d" or "2h30m"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be positive")
        return float(value)
    if isinstance(value, str) and value.strip():
        match = _DURATION.match(value)
        if match and any(match.groups()):
            d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
            total = d * 86400 + h * 3600 + m * 60 + s
            if total > 0:
                return total
    raise ValueError(f"{value!r} is not a duration (write 90s, 30m, 4h or 1d)")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _check_length(value: str) -> None:
    if len(value) > NAME_LENGTH:
        raise ValueError(f"a name has at most {NAME_LENGTH} characters (this one has {len(value)})")


def _check_name(value: str) -> str:
    _check_length(value)
    if not _NAME.match(value):
        raise ValueError("use letters, digits, '-', '_' or '.', starting with a letter or digit")
    return value


def _check_input_name(value: str) -> str:
    _check_length(value)
    if not _INPUT_NAME.match(value):
        raise ValueError("use letters, digits and '_', not starting with a digit (it is written name=value and read as inputs.name)")
    return value


# Workflow and step names follow one rule; input names are identifiers (templates read inputs.NAME).
Name = Annotated[str, AfterValidator(_check_name)]
InputName = Annotated[str, AfterValidator(_check_input_name)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class InputSpec(_Frozen):
    type: Literal["string", "integer", "number", "boolean"] = "string"
    required: bool = False
    default: Any = None
    description: str = ""
    choices: tuple[Any, ...] | None = None


class RetryPolicy(_Frozen):
    attempts: int = Field(3, ge=1, le=20)
    initial_delay: float = Field(1.0, ge=0)
    max_delay: float = Field(30.0, ge=0)


class OutputSpec(_Frozen):
    format: Literal["text", "json"] = "text"
    schema_: dict[str, Any] | None = Field(None, alias="schema")

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                Draft202012Validator.check_schema(value)
            except SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _schema_needs_json(self) -> OutputSpec:
        if self.schema_ is not None and self.format != "json":
            raise ValueError("a schema needs format: json")
        return self


class CheckpointSpec(_Frozen):
    timeout: Duration | None = None
    remind_after: Duration | None = None
    escalate_to: tuple[str, ...] = ()
    on_timeout: Literal["reject", "hold"] = "reject"
    max_revisions: int = Field(3, ge=0, le=20)  # Revise rounds (a re-run with the approver's note); 0: no Revise
    approvals: int = Field(1, ge=1, le=20)  # distinct approvers needed before the run goes on
    self_approval: bool = True  # false: the run's starter may not approve (or edit) it

    @field_validator("escalate_to")
    @classmethod
    def _ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_slack_ids(value)


def _checkpoint(value: Any) -> Any:
    if value is True:
        return CheckpointSpec()
    if value is False or value is None:
        return None
    return value


class _StepBase(_Frozen):
    name: Name
    output: OutputSpec = OutputSpec()
    retry: RetryPolicy = RetryPolicy()
    timeout: Duration = 60.0
    checkpoint: Annotated[CheckpointSpec | None, BeforeValidator(_checkpoint)] = None
    publish: bool = False  # its output is part of the run's result (default: the last step's only)


class ModelStep(_StepBase):
    """A call to a model through litellm."""

    model: str
    prompt: str
    system: str | None = None
    fallbacks: tuple[str, ...] = ()
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    max_tokens: int | None = Field(None, ge=1)
    example: Any = None  # what a mocked run answers with; must keep the output contract

    @field_validator("api_key_env")
    @classmethod
    def _not_ours(cls, value: str | None) -> str | None:
        # The process's own credentials must never be sent to a model provider (nor echoed back by one).
        if value is not None and value.upper().startswith(("SLACK_", "OVERSEER_")):
            raise ValueError(f"{value} is one of Overseer's own settings; name the variable that holds this model's API key")
        return value

    @property
    def kind(self) -> str:
        return "model"


class ToolStep(_StepBase):
    """A call to a Python function: a built-in tool or "package.module:function"."""

    tool: str
    args: dict[str, Any] = {}

    @property
    def kind(self) -> str:
        return "tool"


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "tool" if "tool" in value else "model"
    return getattr(value, "kind", None)


Step = Annotated[
    Union[Annotated[ModelStep, Tag("model")], Annotated[ToolStep, Tag("tool")]],
    Discriminator(_step_kind),
]


class ScheduleSpec(_Frozen):
    cron: str
    timezone: str = "UTC"
    inputs: dict[str, Any] = {}

    @model_validator(mode="after")
    def _valid(self) -> ScheduleSpec:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r} (write e.g. Europe/London)") from None
        try:
            crontab_trigger(self.cron, self.timezone)
        except ValueError as exc:
            raise ValueError(f"bad cron expression {self.cron!r}: {exc}") from None
        return self


def _check_slack_ids(ids: tuple[str, ...]) -> tuple[str, ...]:
    bad = [i for i in ids if not _SLACK_ID.match(i)]
    if bad:
        raise ValueError(f"{', '.join(bad)}: use Slack user (U…/W…) or user group (S…) IDs")
    return ids


class WorkflowSpec(_Frozen):
    """One workflow: what it takes, what each step must produce, who approves it."""

    name: Name
    description: str = ""
    channel: str | None = None
    approvers: tuple[str, ...] = ()
    starters: tuple[str, ...] | None = None
    inputs: dict[InputName, InputSpec] = {}
    budget_usd: float | None = Field(None, gt=0)
    steps: tuple[Step, ...] = Field(min_length=1)
    schedule: ScheduleSpec | None = None

    @field_validator("approvers", "starters")
    @classmethod
    def _ids(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else _check_slack_ids(value)

    @model_validator(mode="after")
    def _consistent(self) -> WorkflowSpec:
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"step name {step.name!r} is used twice")
            seen.add(step.name)
        if any(s.checkpoint for s in self.steps) and not self.approvers:
            raise ValueError("approvers: a workflow with a checkpoint needs at least one approver")
        people = [a for a in self.approvers if not a.startswith("S")]  # a user group may hold any number
        for step in self.steps:
            needed = step.checkpoint.approvals if step.checkpoint else 0
            if needed > len(people) and len(people) == len(self.approvers):
                raise ValueError(f"step {step.name!r}: checkpoint.approvals is {needed} but only {len(people)} approver(s) are listed")
        return self

    def step(self, name: str) -> ModelStep | ToolStep:
        """The step called `name`."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def snapshot(self) -> dict[str, Any]:
        """The spec as plain JSON, stored with each run so a run finishes as it started."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
