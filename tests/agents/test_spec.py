"""Specs load as written, and every mistake is one line naming the file, the step and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.errors import SpecError
from agents.inputs import coerce_inputs, missing_required, parse_assignments
from agents.loading import load_spec, load_workflows, parse_spec
from agents.spec import CheckpointSpec, parse_duration
from agents.templates import context_for, render
from tests.helpers.paths import REPO

EXAMPLE = REPO / "workflows" / "content-update.yaml"


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "flow.yaml")
    return str(info.value).splitlines()


def test_the_issue_example_loads_exactly_as_written() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.name == "content-update" and spec.budget_usd == 0.5
    assert [s.kind for s in spec.steps] == ["tool", "model", "model"]
    draft = spec.step("draft")
    assert draft.checkpoint == CheckpointSpec() and draft.retry.attempts == 4 and draft.fallbacks == ("anthropic/claude-haiku-4-5",)
    assert draft.output.schema_["required"] == ["title", "body"]


def test_every_shipped_workflow_is_valid() -> None:
    specs, found = load_workflows(REPO / "workflows")
    assert found == [] and len(specs) >= 2


def test_a_loaded_spec_is_frozen() -> None:
    spec = load_spec(EXAMPLE)
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["steps"][1].pop("prompt"), "flow.yaml: steps[1] (draft).prompt: Field required"),
        (lambda d: d["steps"][1]["retry"].update(attempts=0), "steps[1] (draft).retry.attempts: Input should be greater than or equal to 1"),
        (lambda d: d["steps"][1].update(temprature=0.2), "steps[1] (draft).temprature: Extra inputs are not permitted"),
        (lambda d: d["steps"][1]["output"]["schema"].update(type="objekt"), "steps[1] (draft).output.schema: not a valid JSON Schema"),
        (lambda d: d["steps"][2].update(name="draft"), "step name 'draft' is used twice"),
        (lambda d: d.update(approvers=["alice"]), "approvers: alice: use Slack user (U…/W…) or user group (S…) IDs"),
        (lambda d: d.update(approvers=[]), "a workflow with a checkpoint needs at least one approver"),
        (lambda d: d.update(steps=[]), "steps: Tuple should have at least 1 item"),
        (lambda d: d["steps"][2].update(prompt="{{ steps.draft.output.bodyy }}"), "steps[2] (seo-audit).prompt: steps.draft.output has no field 'bodyy'"),
        (lambda d: d["steps"][2].update(prompt="{{ inputs.tonne }}"), "steps[2] (seo-audit).prompt: unknown input 'tonne'"),
        (lambda d: d["steps"][1].update(prompt="{{ steps['seo-audit'].output }}"), "steps[1] (draft).prompt: steps.seo-audit is not an earlier step"),
        (lambda d: d["steps"][0]["args"].update(url="{{ url }}"), "steps[0] (crawl).args.url: unknown name 'url'"),
        (lambda d: d["steps"][2].update(prompt="{% if %}"), "steps[2] (seo-audit).prompt: template syntax error"),
        (lambda d: d["steps"][1].update(checkpoint={"timeout": "soon"}), "checkpoint.timeout"),
        (lambda d: d.update(schedule={"cron": "0 9 * * MON-FRI", "timezone": "Europe/Londn"}), "schedule: unknown time zone 'Europe/Londn'"),
        (lambda d: d.update(schedule={"cron": "61 9 * * *"}), "schedule: bad cron expression '61 9 * * *'"),
    ],
)
def test_a_broken_spec_says_where_in_one_line(mutate: Any, expected: str) -> None:
    data = example()
    mutate(data)
    found = problems(data)
    assert any(expected in line for line in found), found
    assert all(line.startswith("flow.yaml: ") for line in found)


def test_broken_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsteps: [\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: line \d+: broken YAML"):
        load_spec(path)


def test_durations() -> None:
    assert [parse_duration(v) for v in (90, "90s", "30m", "4h", "1d", "2h30m")] == [90, 90, 1800, 14400, 86400, 9000]
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_inputs_are_coerced_defaulted_and_checked() -> None:
    spec = parse_spec({
        "name": "f", "inputs": {
            "n": {"type": "integer", "required": True}, "ok": {"type": "boolean", "default": False},
            "size": {"type": "string", "choices": ["s", "m"]}},
        "steps": [{"name": "a", "tool": "fetch_page", "args": {"url": "{{ inputs.n }}"}}],
    }, "f.yaml")
    assert coerce_inputs(spec, {"n": "3", "ok": "yes"}) == {"n": 3, "ok": True}
    assert missing_required(spec, {}) == ["n"]
    for raw, message in [({"n": "x"}, "must be a integer"), ({}, "missing required input 'n'"),
                         ({"n": 1, "size": "xl"}, "must be one of s, m"), ({"n": 1, "extra": 1}, "unknown input 'extra'")]:
        with pytest.raises(Exception, match=message):
            coerce_inputs(spec, raw)
    assert parse_assignments(["a=1", 'b=two words', "c="]) == {"a": "1", "b": "two words", "c": ""}


def test_templates_are_sandboxed_and_strict() -> None:
    ctx = context_for({"tone": "warm"}, {"draft": {"title": "T", "body": "B"}})
    assert render("{{ inputs.tone }} {{ steps.draft.output.body }}", ctx) == "warm B"
    assert '"title": "T"' in render("{{ steps.draft.output }}", ctx)  # whole outputs render as JSON
    with pytest.raises(Exception, match="template error"):
        render("{{ inputs.missing }}", ctx)
    with pytest.raises(Exception, match="template error"):
        render("{{ ''.__class__.__mro__ }}", ctx)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(name="w" * 2000), "flow.yaml: name: a name has at most 64 characters (this one has 2000)"),
        (lambda d: d["steps"][1].update(name="s" * 2000), "steps[1] (" + "s" * 80 + ").name: a name has at most 64 characters"),
        (lambda d: d["steps"][1].update(name="draft: the best"), "steps[1] (draft: the best).name: use letters, digits, '-', '_' or '.'"),
        (lambda d: d["inputs"].update({"page-url": {"type": "string"}}), "inputs.page-url.[key]: use letters, digits and '_'"),
        (lambda d: d["inputs"].update({"u" * 65: {"type": "string"}}), "inputs." + "u" * 65 + ".[key]: a name has at most 64 characters"),
    ],
)
def test_names_are_short_and_plain_so_every_id_that_carries_them_fits(mutate: Any, expected: str) -> None:
    """A 2,000-character step name made its checkpoint unpostable: names are limited, with a clear message."""
    data = example()
    mutate(data)
    found = problems(data)
    assert any(expected in line for line in found), found
    assert all(len(line) < 400 for line in found)  # the message does not repeat the whole name

