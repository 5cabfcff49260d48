"""Output contracts: what a step must produce, checked for model output and for human edits alike.

The check is the wall between an untrusted output and the run: whatever goes wrong while parsing or
checking one (an exception of any kind) is that output's fault, reported as a broken contract, never a
crash of the run. Parsing and validation are bounded (agents.bounds): a JSON value may nest at most
MAX_DEPTH levels and hold at most MAX_VALUES values, and an output may be at most MAX_CHARS characters.
"""

from __future__ import annotations

import itertools
import json
import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from agents.bounds import MAX_CHARS, MAX_DEPTH, shape_problem
from agents.errors import BadOutput, ContractViolation
from agents.spec import OutputSpec
from agents.text import as_text

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?```\s*$", re.DOTALL)

_SCHEMA_ERRORS_SEEN = 50  # a huge off-schema value has as many errors as items: look at a few


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def _schema_problem(spec: OutputSpec, value: Any) -> str | None:
    if spec.schema_ is None:
        return None
    validator = _validator(json.dumps(spec.schema_, sort_keys=True))
    errors = itertools.islice(validator.iter_errors(value), _SCHEMA_ERRORS_SEEN)
    error = min(errors, key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in e.path], default=None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse(text: str) -> tuple[Any, str | None]:
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced.group(1) if fenced else text, parse_constant=_refuse_constant), None
    except json.JSONDecodeError as exc:
        return text, f"the output is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:  # the C parser gives up near the interpreter's limit, long after MAX_DEPTH
        return text, f"the output is nested deeper than {MAX_DEPTH} levels"
    except ValueError as exc:  # NaN, Infinity, an integer of more digits than Python converts
        return text, f"the output is not valid JSON ({exc})"


def _problem(spec: OutputSpec, value: Any) -> tuple[Any, str | None]:
    """(parsed value, what is wrong with it or None)."""
    if isinstance(value, str) and len(value) > MAX_CHARS:
        return value, f"the output is {len(value):,} characters long, more than the {MAX_CHARS:,} allowed"
    if spec.format == "text":
        if not isinstance(value, str) and (shape := shape_problem(value)):
            return value, f"the output {shape}"
        # Strict JSON, not as_text: a value JSON cannot hold is a broken output, not text to accept.
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return (text.strip(), None) if text.strip() else (text, "the output is empty")
    if isinstance(value, str):
        if not value.strip():
            return value, "the output is empty"
        value, problem = _parse(value)
        if problem:
            return value, problem
    shape = shape_problem(value)
    return value, f"the output {shape}" if shape else _schema_problem(spec, value)


def _checked(spec: OutputSpec, value: Any) -> tuple[Any, str | None]:
    """_problem, with any exception it raises turned into the output's problem: a check never crashes a run."""
    try:
        return _problem(spec, value)
    except Exception as exc:  # noqa: BLE001 - the output is hostile or broken; either way it fails the contract
        return value, f"the output could not be checked ({type(exc).__name__}: {str(exc)[:200]})"


def check_output(spec: OutputSpec, raw: Any) -> Any:
    """Parse and validate a model's or tool's output; a broken one (whatever broke) is a (retried) BadOutput."""
    value, problem = _checked(spec, raw)
    if problem:
        raise BadOutput(problem, raw=as_text(raw, indent=None))
    return value


def check_edit(spec: OutputSpec, edited: Any) -> Any:
    """Validate a human's edit against the same contract; a broken one changes nothing."""
    value, problem = _checked(spec, edited)
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
