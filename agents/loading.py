"""Loading workflows: YAML to a WorkflowSpec, then the checks that need more than the types (templates, schedule inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agents.errors import InvalidInputs, SpecError
from agents.inputs import coerce_inputs
from agents.spec import WorkflowSpec
from agents.templates import check_spec_templates


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
    problems = check_spec_templates(spec)
    if spec.schedule is not None:
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
