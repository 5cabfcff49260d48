"""Mock answers: what a model step would say without a provider, shaped to satisfy its output contract.

The step's `example:` when the spec gives one, else a value generated from its JSON Schema (the subset
specs use: object/array/string/integer/number/boolean, properties/required, enum, const,
minLength/maxLength, minimum/maximum, minItems/maxItems, items), else a placeholder text. What the
generator cannot satisfy becomes a placeholder; the contract check still runs on every mock answer.
"""

from __future__ import annotations

import json
from typing import Any

from agents.spec import ModelStep, OutputSpec

PLACEHOLDER = "mock"  # the one word a mock answer is made of where nothing says better


def value_for(schema: Any) -> Any:
    """A value valid against `schema` (for the subset specs use), or PLACEHOLDER where it cannot say."""
    if not isinstance(schema, dict):
        return PLACEHOLDER
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return value_for(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    maker = _MAKERS.get(kind)
    return maker(schema) if maker else PLACEHOLDER


def _string(schema: dict[str, Any]) -> str:
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    text = PLACEHOLDER * max(1, -(-low // len(PLACEHOLDER)))
    return text[: max(low, int(high))] if high is not None else text


def _number(schema: dict[str, Any]) -> float | int:
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("exclusiveMinimum") is not None:
        low = schema["exclusiveMinimum"] + 1
    if low is not None:
        return low
    if high is not None:
        return min(0, high)
    return 0


def _integer(schema: dict[str, Any]) -> int:
    value = _number(schema)
    return int(value) if float(value).is_integer() else int(value) + 1


def _array(schema: dict[str, Any]) -> list[Any]:
    count = max(int(schema.get("minItems", 0)), 1)
    if schema.get("maxItems") is not None:
        count = min(count, int(schema["maxItems"]))
    return [value_for(schema.get("items", {})) for _ in range(count)]


def _object(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    names = list(dict.fromkeys([*schema.get("required", ()), *properties]))
    return {name: value_for(properties.get(name, {})) for name in names}


_MAKERS: dict[str, Any] = {
    "string": _string, "integer": _integer, "number": _number, "boolean": lambda _: True,
    "null": lambda _: None, "array": _array, "object": _object,
}


def answer_text(output: OutputSpec, example: Any, step: str) -> str:
    """The text a mock model answers with for a step of this output contract."""
    if example is not None:
        return example if isinstance(example, str) else json.dumps(example, ensure_ascii=False)
    if output.format == "json":
        value = value_for(output.schema_) if output.schema_ is not None else {"result": PLACEHOLDER}
        return json.dumps(value, ensure_ascii=False)
    return f"(mock answer for step {step}: no model was called; give the step an `example:` to shape it)"


def answer_for(step: ModelStep) -> str:
    """The mock answer for a model step."""
    return answer_text(step.output, step.example, step.name)
