"""Run inputs: coerced to the types the spec declares, with defaults, or a clear InvalidInputs."""

from __future__ import annotations

from typing import Any

from agents.errors import InvalidInputs
from agents.spec import InputSpec, WorkflowSpec

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def _coerce(name: str, spec: InputSpec, value: Any) -> Any:
    kind = spec.type
    try:
        if kind == "string":
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            value = str(value)
        elif kind == "integer":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif kind == "number":
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        elif kind == "boolean" and not isinstance(value, bool):
            lowered = str(value).strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError
            value = lowered in _TRUE
    except (TypeError, ValueError):
        raise InvalidInputs(f"input {name!r} must be a {kind}, got {value!r}") from None
    if spec.choices is not None and value not in spec.choices:
        raise InvalidInputs(f"input {name!r} must be one of {', '.join(map(str, spec.choices))}, got {value!r}")
    return value


def coerce_inputs(spec: WorkflowSpec, raw: dict[str, Any]) -> dict[str, Any]:
    """Inputs typed as the spec says; unknown or missing ones are an InvalidInputs naming them."""
    unknown = sorted(set(raw) - set(spec.inputs))
    if unknown:
        known = ", ".join(spec.inputs) or "none"
        raise InvalidInputs(f"unknown input {', '.join(map(repr, unknown))} for {spec.name} (inputs: {known})")
    values: dict[str, Any] = {}
    missing = []
    for name, input_spec in spec.inputs.items():
        if name in raw and raw[name] not in (None, ""):
            values[name] = _coerce(name, input_spec, raw[name])
        elif input_spec.default is not None:
            values[name] = input_spec.default
        elif input_spec.required:
            missing.append(name)
    if missing:
        raise InvalidInputs(f"missing required input {', '.join(map(repr, missing))} for {spec.name}")
    return values


def missing_required(spec: WorkflowSpec, raw: dict[str, Any]) -> list[str]:
    """The required inputs with no value and no default (the Slack modal asks for these)."""
    return [n for n, s in spec.inputs.items() if s.required and s.default is None and raw.get(n) in (None, "")]


def parse_assignments(words: list[str]) -> dict[str, str]:
    """`key=value` words (already shell-split) into a dict; anything else is an InvalidInputs."""
    values: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key.strip():
            raise InvalidInputs(f"{word!r} is not key=value (write url=https://… tone=\"very formal\")")
        values[key.strip()] = value
    return values
