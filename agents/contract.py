"""Output contracts: what a step must produce, checked for model output and for human edits alike."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from agents.errors import BadOutput, ContractViolation
from agents.spec import OutputSpec
from agents.text import as_text

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def _schema_problem(spec: OutputSpec, value: Any) -> str | None:
    if spec.schema_ is None:
        return None
    validator = _validator(json.dumps(spec.schema_, sort_keys=True))
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"


def _problem(spec: OutputSpec, value: Any) -> tuple[Any, str | None]:
    """(parsed value, what is wrong with it or None)."""
    if spec.format == "text":
        text = as_text(value, indent=None)
        return (text.strip(), None) if text.strip() else (text, "the output is empty")
    if isinstance(value, str):
        if not value.strip():
            return value, "the output is empty"
        fenced = _FENCE.match(value)
        try:
            value = json.loads(fenced.group(1) if fenced else value)
        except json.JSONDecodeError as exc:
            return value, f"the output is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    return value, _schema_problem(spec, value)


def check_output(spec: OutputSpec, raw: Any) -> Any:
    """Parse and validate a model's or tool's output; a broken one is a (retried) BadOutput."""
    value, problem = _problem(spec, raw)
    if problem:
        raise BadOutput(problem, raw=as_text(raw, indent=None))
    return value


def check_edit(spec: OutputSpec, edited: Any) -> Any:
    """Validate a human's edit against the same contract; a broken one changes nothing."""
    value, problem = _problem(spec, edited)
    if problem:
        raise ContractViolation(f"the edit breaks the output contract: {problem}")
    return value


def contract_instructions(spec: OutputSpec) -> str | None:
    """What to tell the model about the output it must produce, or None for free text."""
    if spec.format != "json":
        return None
    if spec.schema_:
        return "Answer with only a JSON value that matches this JSON Schema, no prose:\n" + json.dumps(spec.schema_)
    return "Answer with only valid JSON, no prose."
