"""Loading workflows: YAML to a WorkflowSpec, then the checks that need more than the types (templates, schedule inputs).

A spec file is read defensively, because one broken file must not stop the server: it is at most
MAX_SPEC_BYTES, must be UTF-8, may nest at most MAX_DEPTH levels, and its aliases may not expand it past
MAX_VALUES values (a "billion laughs" of 500 bytes would otherwise build a billion). Every refusal is one
SpecError line naming the file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agents.bounds import MAX_DEPTH, MAX_VALUES, shape_problem
from agents.contract import check_output
from agents.errors import BadOutput, InvalidInputs, SpecError, ToolNotFound
from agents.inputs import coerce_inputs
from agents.spec import ModelStep, WorkflowSpec
from agents.templates import check_spec_templates
from agents.tools import BUILTIN_TOOLS, resolve_tool


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    """`steps[1] (draft) > output.schema` from a pydantic error location."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]" + (f" ({str(name)[:80]})" if name else "")]
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            if item in ("model", "tool", "function-after[_checkpoint()]") and parts and parts[-1].startswith("steps["):
                continue  # union branch tags, not fields the author wrote
            parts.append(str(item)[:80])  # a key may be a name too long to be valid
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def _example_problems(spec: WorkflowSpec) -> list[str]:
    """A step's `example:` (what a mocked run answers) must keep the step's own output contract."""
    problems = []
    for index, step in enumerate(spec.steps):
        example = getattr(step, "example", None)
        if example is None:
            continue
        try:
            check_output(step.output, example)
        except BadOutput as exc:
            problems.append(f"steps[{index}] ({step.name}).example: breaks the step's output contract: {exc}")
    return problems


def _tool_problems(steps: Any) -> list[str]:
    """Every `tool:` must name a built-in or an importable function: a misspelt one fails here, not mid-run.

    Read from the raw steps, so it is reported beside the file's other problems even when the spec is invalid."""
    problems = []
    for index, step in enumerate(steps if isinstance(steps, (list, tuple)) else []):
        tool = step.get("tool") if isinstance(step, dict) else None
        if not isinstance(tool, str):
            continue
        try:
            resolve_tool(tool)
        except Exception as exc:  # noqa: BLE001 - ToolNotFound, or whatever importing that module raised
            if not isinstance(exc, ToolNotFound):
                exc = ToolNotFound(f"tool {tool!r} cannot be imported: {type(exc).__name__}: {exc}")
            close = difflib.get_close_matches(tool, list(BUILTIN_TOOLS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            name = f" ({str(step['name'])[:80]})" if step.get("name") else ""
            problems.append(f"steps[{index}]{name}.tool: {_one_line(exc)}{hint}")
    return problems


def lint_spec(spec: WorkflowSpec) -> list[str]:
    """What the project's rules ask of a spec beyond validity, one warning each: an output contract for
    every model step, a description, a budget for a workflow that calls models."""
    warnings = []
    if not spec.description.strip():
        warnings.append("description: none; say what the workflow is for (`/overseer list` shows it)")
    models = [s for s in spec.steps if isinstance(s, ModelStep)]
    if models and spec.budget_usd is None:
        warnings.append("budget_usd: none; a workflow that calls models should say what a run may spend")
    for index, step in enumerate(spec.steps):
        if not isinstance(step, ModelStep):
            continue
        where = f"steps[{index}] ({step.name}).output"
        if "output" not in step.model_fields_set:
            warnings.append(f"{where}: no output contract; declare `format: json` with a `schema`, or `format: text`")
        elif step.output.format == "json" and step.output.schema_ is None:
            warnings.append(f"{where}: format json without a schema; any JSON passes")
    return warnings  # a checkpoint without approvers is an error already (WorkflowSpec refuses it)


def parse_spec(data: Any, source: str) -> WorkflowSpec:
    """Validate a spec's parsed YAML; raise SpecError with one line per problem (and nothing else, whatever the data)."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the file must hold a mapping (name:, steps:, ...)")
    shape = shape_problem(data)
    if shape:
        raise SpecError(f"{source}: the spec {shape}")
    try:
        return _validated(data, source)
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - a check tripped on data nobody foresaw: still the file's problem, in one line
        raise SpecError(f"{source}: cannot load: {type(exc).__name__}: {_one_line(exc)}") from None


def _validated(data: dict[str, Any], source: str) -> WorkflowSpec:
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {_where(data, tuple(err['loc']))}: {msg}")
        lines += [f"{source}: {p}" for p in _tool_problems(data.get("steps"))]  # in the same pass
        raise SpecError("\n".join(dict.fromkeys(lines))) from None
    problems = check_spec_templates(spec) + _example_problems(spec) + _tool_problems(data.get("steps"))
    if spec.schedule is not None:
        try:
            coerce_inputs(spec, dict(spec.schedule.inputs))
        except InvalidInputs as exc:
            problems.append(f"schedule.inputs: {exc}")
    if problems:
        raise SpecError("\n".join(f"{source}: {p}" for p in problems))
    return spec


MAX_SPEC_BYTES = 1_000_000


class _Refused(yaml.MarkedYAMLError):
    """YAML the loader will not build: too deep, or aliases that expand too far."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _expansion_problem(root: yaml.Node) -> tuple[str, yaml.Node] | None:
    """What is wrong with the tree the composed graph expands to (aliases copied out), walked once per node."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) of its expansion
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            sizes = [done[id(child)] for child in _children(node)]
            values, depth = 1 + sum(v for v, _ in sizes), 1 + max((d for _, d in sizes), default=0)
            if values > MAX_VALUES:
                return f"aliases expand this file to more than {MAX_VALUES:,} values", node
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels (through aliases)", node
            done[id(node)] = (values, depth)
        elif id(node) in entered:
            if id(node) not in done:
                return "an alias refers to a value that contains it", node
        else:
            entered.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return None


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH and aliases that expand past MAX_VALUES."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self._depth >= MAX_DEPTH:
            raise _Refused(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        found = _expansion_problem(node)
        if found:
            problem, where = found
            raise _Refused(None, None, problem, where.start_mark)
        return node


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: the file is larger than {MAX_SPEC_BYTES:,} bytes; a spec may not be")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None


def _one_line(problem: object) -> str:
    return " ".join(str(problem).split())[:300]


def load_spec(path: Path) -> WorkflowSpec:
    """Load one YAML spec file; whatever is wrong with it is a SpecError naming the file."""
    text = _read_text(path)
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader, with limits
    except _Refused as exc:
        raise SpecError(f"{path}: line {exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        raise SpecError(f"{path}:{where} broken YAML: {_one_line(getattr(exc, 'problem', exc))}") from None
    except Exception as exc:  # noqa: BLE001 - a scalar PyYAML cannot build (a 2001-13-45 date, a 5,000-digit int)
        raise SpecError(f"{path}: broken YAML: {type(exc).__name__}: {_one_line(exc)}") from None
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
