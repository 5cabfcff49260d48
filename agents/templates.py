"""Jinja2 templates for prompts and tool args: sandboxed, bounded (agents.sandbox), strict, and checked before anything runs."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateError, nodes

from agents.errors import TemplateFailure
from agents.sandbox import BoundedEnvironment, limit_problems, render_bounded

if TYPE_CHECKING:
    from agents.spec import WorkflowSpec


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


@lru_cache(maxsize=1)
def environment() -> BoundedEnvironment:
    """The one sandboxed environment; undefined names raise instead of rendering as ''."""
    env = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["tojson"] = _tojson
    return env


@lru_cache(maxsize=512)
def _compile(source: str):  # type: ignore[no-untyped-def]
    return environment().from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    """Render one template string; a missing name, a sandbox breach, a limit hit or any other error is a TemplateFailure."""
    if "{" not in source:
        return source
    try:
        return render_bounded(_compile(source), context)
    except TemplateError as exc:
        raise TemplateFailure(f"template error: {exc.message or exc}") from None
    except Exception as exc:  # noqa: BLE001 - 1/0, range(10**9), a macro that recurses forever: the template is broken
        raise TemplateFailure(f"template error: {type(exc).__name__}: {str(exc)[:300]}") from None


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render every string inside a nested args structure."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


class _JSONView(dict):
    """A dict that renders as JSON when printed whole (a model reads JSON best, not a Python repr)."""

    def __str__(self) -> str:
        return _tojson(dict(self))


class _ListView(list):
    def __str__(self) -> str:
        return _tojson(list(self))


def _view(value: Any) -> Any:
    if isinstance(value, dict):
        return _JSONView({k: _view(v) for k, v in value.items()})
    if isinstance(value, list):
        return _ListView(_view(v) for v in value)
    return value


def context_for(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """The template context: `inputs.x` and `steps.<name>.output`."""
    return {
        "inputs": _view(inputs),
        "steps": {name: {"output": _view(out)} for name, out in outputs.items()},
    }


# --- static checks, so a typo fails `overseer check` and not a run at 3 a.m. ---------------------


def _chain(node: nodes.Node) -> list[str] | None:
    """['steps', 'draft', 'output', 'body'] for steps.draft.output.body or steps['draft'].output['body']."""
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return list(reversed(parts))
        else:
            return None


def _outermost_chains(ast: nodes.Node) -> list[list[str]]:
    chains: list[list[str]] = []
    inner: set[int] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if id(node) in inner:
            continue
        chain = _chain(node)
        if chain:
            chains.append(chain)
            sub = node.node
            while isinstance(sub, (nodes.Getattr, nodes.Getitem)):
                inner.add(id(sub))
                sub = sub.node
    return chains


def _schema_allows(schema: dict[str, Any] | None, key: str) -> bool:
    if not schema or "properties" not in schema:
        return True
    # A field the schema does not list is absent from most outputs: flag it unless extras are declared.
    return key in schema["properties"] or bool(schema.get("additionalProperties", False))


def _check_chain(chain: list[str], spec: WorkflowSpec, earlier: dict[str, Any]) -> str | None:
    root = chain[0]
    if root == "inputs":
        if len(chain) > 1 and chain[1] not in spec.inputs:
            return f"unknown input {chain[1]!r} (inputs: {', '.join(spec.inputs) or 'none'})"
    elif root == "steps":
        if len(chain) > 1:
            if chain[1] not in earlier:
                return f"steps.{chain[1]} is not an earlier step (earlier: {', '.join(earlier) or 'none'})"
            if len(chain) > 2 and chain[2] != "output":
                return f"steps.{chain[1]}.{chain[2]}: only .output is available"
            step = earlier[chain[1]]
            if len(chain) > 3:
                if step.output.format != "json":
                    return f"steps.{chain[1]}.output is text; it has no field {chain[3]!r}"
                if not _schema_allows(step.output.schema_, chain[3]):
                    return f"steps.{chain[1]}.output has no field {chain[3]!r} in its schema"
    return None


def _check_source(source: str, spec: WorkflowSpec, earlier: dict[str, Any]) -> list[str]:
    try:
        return _source_problems(source, spec, earlier)
    except RecursionError:  # Jinja parses and compiles recursively
        return ["template syntax error: nested too deeply"]


def _source_problems(source: str, spec: WorkflowSpec, earlier: dict[str, Any]) -> list[str]:
    env = environment()
    try:
        ast = env.parse(source)
    except TemplateError as exc:
        return [f"template syntax error: {exc.message}"]
    from jinja2 import meta

    problems = limit_problems(ast)
    problems += [
        f"unknown name {name!r} (use inputs.<name> or steps.<step>.output)"
        for name in sorted(meta.find_undeclared_variables(ast) - {"inputs", "steps"})
    ]
    for chain in _outermost_chains(ast):
        if chain[0] in ("inputs", "steps"):
            problem = _check_chain(chain, spec, earlier)
            if problem:
                problems.append(problem)
    return problems


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _strings(v, f"{path}[{i}]")]
    return []


def check_spec_templates(spec: WorkflowSpec) -> list[str]:
    """One line per template problem: syntax, unknown names, later steps, missing schema fields."""
    problems: list[str] = []
    earlier: dict[str, Any] = {}
    for index, step in enumerate(spec.steps):
        where = f"steps[{index}] ({step.name})"
        fields = (
            [("prompt", step.prompt), ("system", step.system or "")]
            if step.kind == "model"
            else _strings(step.args, "args")
        )
        for field, source in fields:
            problems.extend(f"{where}.{field}: {p}" for p in _check_source(source, spec, earlier))
        earlier[step.name] = step
    return list(dict.fromkeys(problems))
