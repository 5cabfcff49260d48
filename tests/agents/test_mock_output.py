"""Mock answers: a value for every schema of the subset specs use, and a spec `example` must keep its contract."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from agents.contract import check_output
from agents.errors import SpecError
from agents.loading import parse_spec
from agents.mock_output import PLACEHOLDER, answer_for, value_for
from agents.spec import ModelStep, OutputSpec


def _leaf() -> st.SearchStrategy[dict]:
    lengths = st.integers(0, 30)
    strings = st.builds(
        lambda low, extra, use_max: {"type": "string", "minLength": low, **({"maxLength": low + extra} if use_max else {})},
        lengths, lengths, st.booleans(),
    )
    numbers = st.builds(lambda kind, low: {"type": kind, **({"minimum": low} if low is not None else {})},
                        st.sampled_from(["integer", "number"]), st.none() | st.integers(-50, 50))
    enums = st.lists(st.text(max_size=5), min_size=1, max_size=4, unique=True).map(lambda e: {"type": "string", "enum": e})
    return strings | numbers | enums | st.just({"type": "boolean"})


SCHEMAS = st.recursive(
    _leaf(),
    lambda inner: st.builds(lambda items, low: {"type": "array", "items": items, "minItems": low}, inner, st.integers(0, 3))
    | st.dictionaries(st.text("abcdefgh", min_size=1, max_size=6), inner, max_size=4).flatmap(
        lambda props: st.builds(
            lambda required: {"type": "object", "properties": props, "required": required},
            st.lists(st.sampled_from(sorted(props)), unique=True) if props else st.just([]),
        )
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(SCHEMAS)
def test_the_generated_value_is_valid_against_every_schema_of_the_subset(schema: dict) -> None:
    assert Draft202012Validator(schema).is_valid(value_for(schema)), (schema, value_for(schema))


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "object", "required": ["category", "urgency"],
          "properties": {"category": {"type": "string", "enum": ["bug", "billing"]}, "urgency": {"type": "integer", "minimum": 1}}},
         {"category": "bug", "urgency": 1}),
        ({"type": "array", "minItems": 2, "items": {"type": "string", "maxLength": 2}}, ["mo", "mo"]),
        ({"type": "string", "minLength": 10}, "mockmockmock"),
        ({"type": ["null", "boolean"]}, True),
        ({"const": 7}, 7),
    ],
)
def test_a_value_is_made_from_each_keyword_of_the_subset(schema: dict, value: object) -> None:
    assert value_for(schema) == value


def test_what_the_generator_cannot_satisfy_is_a_placeholder_the_contract_check_still_refuses() -> None:
    output = OutputSpec(format="json", schema={"type": "string", "pattern": "^[0-9]+$"})
    step = ModelStep(name="s", model="m", prompt="p", output=output)
    assert json.loads(answer_for(step)) == PLACEHOLDER
    with pytest.raises(Exception, match="does not match"):
        check_output(output, answer_for(step))


def test_a_step_answers_with_its_example_else_its_schema_else_a_placeholder_text() -> None:
    schema = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}
    given_example = ModelStep(name="s", model="m", prompt="p", output={"format": "json", "schema": schema},
                              example={"title": "Pricing"})
    assert json.loads(answer_for(given_example)) == {"title": "Pricing"}
    from_schema = ModelStep(name="s", model="m", prompt="p", output={"format": "json", "schema": schema})
    assert json.loads(answer_for(from_schema)) == {"title": PLACEHOLDER}
    text = ModelStep(name="summary", model="m", prompt="p")
    assert "mock answer for step summary" in answer_for(text) and check_output(text.output, answer_for(text))


def test_an_example_that_breaks_its_own_contract_is_a_spec_error_naming_the_step_and_field() -> None:
    data = {"name": "wf", "steps": [{
        "name": "triage", "model": "openai/gpt-4o-mini", "prompt": "p",
        "output": {"format": "json", "schema": {"type": "object", "required": ["category"],
                                                 "properties": {"category": {"enum": ["bug", "billing"]}}}},
        "example": {"category": "weather"},
    }]}
    with pytest.raises(SpecError) as caught:
        parse_spec(data, "wf.yaml")
    message = str(caught.value)
    assert "wf.yaml" in message and "triage" in message and "example: breaks the step's output contract" in message
    assert "'weather' is not one of" in message
