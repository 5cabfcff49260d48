"""The workflow spec: typed with pydantic, frozen once loaded, errors that name file, step and field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from agents.errors import SpecError

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")
_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    name: str
    output: OutputSpec = OutputSpec()
    retry: RetryPolicy = RetryPolicy()
    timeout: Duration = 60.0
    checkpoint: Annotated[CheckpointSpec | None, BeforeValidator(_checkpoint)] = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '-', '_' or '.'")
        return value


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
        from agents.cron import crontab_trigger

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

    name: str
    description: str = ""
    channel: str | None = None
    approvers: tuple[str, ...] = ()
    starters: tuple[str, ...] | None = None
    inputs: dict[str, InputSpec] = {}
    budget_usd: float | None = Field(None, gt=0)
    steps: tuple[Step, ...] = Field(min_length=1)
    schedule: ScheduleSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '-', '_' or '.'")
        return value

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


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    """`steps[1] (draft) > output.schema` from a pydantic error location."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]" + (f" ({name})" if name else "")]
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            if item in ("model", "tool", "function-after[_checkpoint()]") and parts and parts[-1].startswith("steps["):
                continue  # union branch tags, not fields the author wrote
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def parse_spec(data: Any, source: str) -> WorkflowSpec:
    """Validate a spec's parsed YAML; raise SpecError with one line per problem."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the file must hold a mapping (name:, steps:, ...)")
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {_where(data, tuple(err['loc']))}: {msg}")
        raise SpecError("\n".join(dict.fromkeys(lines))) from None
    from agents.templates import check_spec_templates

    problems = check_spec_templates(spec)
    if spec.schedule is not None:
        from agents.errors import InvalidInputs
        from agents.inputs import coerce_inputs

        try:
            coerce_inputs(spec, dict(spec.schedule.inputs))
        except InvalidInputs as exc:
            problems.append(f"schedule.inputs: {exc}")
    if problems:
        raise SpecError("\n".join(f"{source}: {p}" for p in problems))
    return spec


def load_spec(path: Path) -> WorkflowSpec:
    """Load one YAML spec file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{path}:{where}: broken YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_spec(data, str(path))


def load_workflows(folder: Path) -> tuple[dict[str, WorkflowSpec], list[str]]:
    """Every spec in a folder, by name, and one line per problem found."""
    specs: dict[str, WorkflowSpec] = {}
    problems: list[str] = []
    if not folder.is_dir():
        return specs, [f"{folder}: no such workflows folder"]
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            problems.extend(str(exc).splitlines())
            continue
        if spec.name in specs:
            problems.append(f"{path}: name: workflow {spec.name!r} is defined twice")
            continue
        specs[spec.name] = spec
    return specs, problems
