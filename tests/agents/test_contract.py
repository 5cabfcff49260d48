"""The output contract check is a wall: whatever an output holds, the check answers BadOutput (or the value), fast."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.bounds import MAX_CHARS, MAX_DEPTH
from agents.contract import check_edit, check_output
from agents.errors import BadOutput, ContractViolation
from agents.spec import OutputSpec

JSON_ANY = OutputSpec(format="json")
TEXT = OutputSpec(format="text")
SCHEMA = OutputSpec.model_validate({"format": "json", "schema": {
    "type": "object", "required": ["title"], "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {"$ref": "#"}}},
}})


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("spec", [JSON_ANY, SCHEMA], ids=["json", "schema"])
@pytest.mark.parametrize("raw", [
    "[" * 5000 + "]" * 5000, "[" * 5000, '{"a":' * 3000 + "1" + "}" * 3000, json.dumps(nested(MAX_DEPTH + 1)),
], ids=["brackets", "unclosed", "objects", "just-too-deep"])
def test_json_nested_too_deep_is_a_clear_bad_output(spec: OutputSpec, raw: str) -> None:
    with pytest.raises(BadOutput, match=f"nested deeper than {MAX_DEPTH} levels|not valid JSON") as info:
        check_output(spec, raw)
    assert info.value.raw == raw


def test_json_as_deep_as_allowed_passes() -> None:
    assert check_output(JSON_ANY, json.dumps(nested(MAX_DEPTH - 1))) == nested(MAX_DEPTH - 1)


@pytest.mark.parametrize(("raw", "expected"), [
    ("NaN", "NaN is not valid JSON"),
    ('{"a": -Infinity}', "-Infinity is not valid JSON"),
    ("1" * 5000, "not valid JSON"),
    ("x" * (MAX_CHARS + 1), "more than the 1,000,000 allowed"),
])
def test_json_python_would_mangle_or_choke_on_is_refused(raw: str, expected: str) -> None:
    with pytest.raises(BadOutput, match=expected):
        check_output(JSON_ANY, raw)


@pytest.mark.parametrize(("value", "expected"), [
    (nested(5000), "nested deeper than"),
    (list(range(200_000)), "more than 100,000 values"),
    ({"a": float("nan")}, "NaN or Infinity"),
])
@pytest.mark.parametrize("spec", [JSON_ANY, TEXT], ids=["json", "text"])
def test_a_tool_value_too_deep_too_big_or_not_json_is_refused(spec: OutputSpec, value: Any, expected: str) -> None:
    with pytest.raises(BadOutput, match=expected):
        check_output(spec, value)


def test_any_exception_while_checking_is_the_outputs_fault() -> None:
    with pytest.raises(BadOutput, match=r"could not be checked \(TypeError"):
        check_output(TEXT, {"when": object()})  # a tool returned something JSON cannot hold


def test_a_huge_off_schema_value_is_checked_quickly() -> None:
    spec = OutputSpec.model_validate({"format": "json", "schema": {"type": "array", "items": {"type": "string"}}})
    started = time.perf_counter()
    with pytest.raises(BadOutput, match="0: 0 is not of type 'string'"):
        check_output(spec, json.dumps(list(range(90_000))))
    assert time.perf_counter() - started < 2


def test_a_human_edit_gets_the_same_protection() -> None:
    with pytest.raises(ContractViolation, match=f"edit breaks the output contract: the output is nested deeper than {MAX_DEPTH}"):
        check_edit(JSON_ANY, "[" * 5000 + "]" * 5000)
    with pytest.raises(ContractViolation, match="NaN"):
        check_edit(SCHEMA, '{"title": NaN}')


# --- fuzz: arbitrary text and JSON only ever pass or fail as BadOutput ----------------------------

FUZZ = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=30,
)
brackets = st.text(alphabet='[]{}",:0\\ntrue', max_size=3000)


def _check_everywhere(raw: Any) -> None:
    for spec in (JSON_ANY, TEXT, SCHEMA):
        try:
            check_output(spec, raw)
        except BadOutput:
            pass


@FUZZ
@given(st.one_of(st.text(), brackets, json_values.map(json.dumps), json_values))
def test_fuzz_check_output_only_passes_or_raises_bad_output(raw: Any) -> None:
    _check_everywhere(raw)


@FUZZ
@given(st.integers(min_value=1, max_value=20_000), st.sampled_from(["[", "{\"a\":", "[{\"b\":"]))
def test_fuzz_any_nesting_depth_only_passes_or_raises_bad_output(depth: int, opener: str) -> None:
    closer = "".join({"[": "]", "{": "}"}[c] for c in opener if c in "[{")[::-1]
    _check_everywhere(opener * depth + "1" + closer * depth)
