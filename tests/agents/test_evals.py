"""Evals re-run what people approved under a spec and score it; every figure is worked out by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.engine import Engine, EngineSettings
from agents.evals import NothingToEvaluate, json_agreement, leaves, run_eval, text_agreement
from agents.spec import WorkflowSpec
from storage.status import RunStatus
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.specs import model_spec

SCHEMA = {"type": "object", "required": ["title", "body"], "properties": {
    "title": {"type": "string"}, "body": {"type": "string"}, "tags": {"type": "array"}}}


def draft_spec(fake: FakeModel, prompt: str = "Write for {{ inputs.who }} from: {{ steps.facts.output }}",
               output: dict[str, Any] | None = None) -> WorkflowSpec:
    """facts (text) -> draft (a checkpoint), then a step after it the eval must never run."""
    return model_spec(fake, approvers=["U0ALICE"], steps=[
        {"name": "facts", "model": "openai/gpt-4o-mini", "prompt": "Facts about {{ inputs.who }}"},
        {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": prompt, "checkpoint": True,
         "output": output or {"format": "json", "schema": SCHEMA}},
        {"name": "publish", "model": "openai/gpt-4o-mini", "prompt": "Publish {{ steps.draft.output }}"},
    ])


async def decided(engine: Engine, fake: FakeModel, spec: WorkflowSpec, who: str, facts: str, draft: Any,
                  action: str, edited: Any = None) -> str:
    """A run through the real engine to its checkpoint, decided by a person."""
    fake.script(Reply.text(facts), Reply.json(draft) if not isinstance(draft, str) else Reply.text(draft))
    run_id = await engine.start(spec, {"who": who}, started_by="U0BOB")
    assert await engine.advance(run_id) == RunStatus.AWAITING_APPROVAL
    await engine.decide(run_id, "draft", action=action, by="U0ALICE", edited=edited,
                        reason="no" if action == "reject" else None)
    return run_id


async def history(engine: Engine, fake: FakeModel, spec: WorkflowSpec) -> tuple[str, str]:
    """a: approved as is; b: edited (title changed); c: rejected (never evaluated against)."""
    a = await decided(engine, fake, spec, "ann", "Ann likes tea.", {"title": "A", "body": "x", "tags": ["a", "b"]}, "approve")
    b = await decided(engine, fake, spec, "ben", "Ben likes jam.", {"title": "B", "body": "y", "tags": ["c"]}, "edit",
                      edited={"title": "B2", "body": "y", "tags": ["c"]})
    await decided(engine, fake, spec, "cat", "Cat likes rye.", {"title": "C", "body": "z"}, "reject")
    return a, b


def eval_requests(fake: FakeModel, since: int) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests[since:]]


async def test_agreement_is_the_mean_share_of_leaf_fields_equal_to_the_humans_final(
    engine: Engine, engine_settings: EngineSettings, fake_model: FakeModel
) -> None:
    spec = draft_spec(fake_model)
    a, b = await history(engine, fake_model, spec)
    before = fake_model.count
    # Newest first: b, then a. Each re-run costs twice the tokens of the original draft.
    fake_model.script(
        Reply.json({"title": "B", "body": "y", "tags": ["c"]}, prompt_tokens=20, completion_tokens=10),
        Reply.json({"title": "A", "body": "x", "tags": ["a"]}, prompt_tokens=20, completion_tokens=10),
    )
    report = await run_eval(engine.db, spec, workflow="test-flow", last=10, engine_settings=engine_settings)

    by_run = {c.run_id: c for c in report.cases}
    assert [c.run_id for c in report.cases] == [b, a]  # the rejected run is not a case
    # b: the human's final has title B2; leaves /body /tags/0 /title: 2 of 3 equal.
    assert by_run[b].agreement == pytest.approx(2 / 3) and by_run[b].differing == ["/title"]
    assert by_run[b].expected == {"title": "B2", "body": "y", "tags": ["c"]} and by_run[b].action == "edit"
    # a: leaves /body /tags/0 /tags/1 /title of both: /tags/1 is missing from the new output: 3 of 4.
    assert by_run[a].agreement == pytest.approx(3 / 4) and by_run[a].differing == ["/tags/1"]
    assert report.agreement == pytest.approx((2 / 3 + 3 / 4) / 2)  # 17/24
    assert report.schema_valid_rate == 1.0
    assert [c.run_id for c in report.worst()] == [b, a]

    totals = report.totals()
    assert totals["old_cost_usd"] > 0
    assert totals["new_cost_usd"] == pytest.approx(2 * totals["old_cost_usd"])
    assert totals["cost_change_usd"] == pytest.approx(totals["old_cost_usd"])
    assert totals["new_latency_ms"] > 0

    # Only the checkpointed step ran again (facts replayed from the original run, publish never run),
    # rendered from the original run's inputs and recorded outputs.
    sent = eval_requests(fake_model, before)
    assert len(sent) == 2
    assert "Write for ben from: Ben likes jam." in sent[0]["messages"][-1]["content"]
    assert "Write for ann from: Ann likes tea." in sent[1]["messages"][-1]["content"]
    assert json.loads(json.dumps(report.to_dict()))["agreement"] == pytest.approx(17 / 24)


async def test_a_changed_prompt_in_the_spec_under_test_is_what_runs(
    engine: Engine, engine_settings: EngineSettings, fake_model: FakeModel
) -> None:
    spec = draft_spec(fake_model)
    a, b = await history(engine, fake_model, spec)
    changed = draft_spec(fake_model, prompt="NEW PROMPT for {{ inputs.who }}: {{ steps.facts.output }}")
    before = fake_model.count
    fake_model.script(Reply.json({"title": "B2", "body": "y", "tags": ["c"]}))
    report = await run_eval(engine.db, changed, workflow="test-flow", last=1, engine_settings=engine_settings)

    assert [c.run_id for c in report.cases] == [b] and report.agreement == 1.0 and report.worst() == []
    (sent,) = eval_requests(fake_model, before)
    assert sent["messages"][-1]["content"] == "NEW PROMPT for ben: Ben likes jam."


async def test_an_alternative_model_answers_instead(
    engine: Engine, engine_settings: EngineSettings, fake_model: FakeModel
) -> None:
    spec = draft_spec(fake_model)
    await history(engine, fake_model, spec)
    before = fake_model.count
    fake_model.script(Reply.json({"title": "B2", "body": "y", "tags": ["c"]}))
    report = await run_eval(engine.db, spec, workflow="test-flow", last=1, model="openai/gpt-4o",
                            engine_settings=engine_settings)
    assert report.model == "openai/gpt-4o" and report.agreement == 1.0
    assert [r["model"] for r in eval_requests(fake_model, before)] == ["gpt-4o"]


async def test_text_outputs_are_scored_by_difflib_ratio(
    engine: Engine, engine_settings: EngineSettings, fake_model: FakeModel
) -> None:
    spec = draft_spec(fake_model, output={"format": "text"})
    run_id = await decided(engine, fake_model, spec, "ann", "Ann likes tea.", "The cat sat.", "approve")
    fake_model.script(Reply.text("The cat sat!"))
    report = await run_eval(engine.db, spec, workflow="test-flow", engine_settings=engine_settings)
    (case,) = report.cases
    # 11 of 12 characters match on each side: 2 * 11 / 24.
    assert case.run_id == run_id and case.schema_valid and case.agreement == pytest.approx(22 / 24)


async def test_a_rerun_that_breaks_the_contract_scores_zero(
    engine: Engine, engine_settings: EngineSettings, fake_model: FakeModel
) -> None:
    spec = draft_spec(fake_model)
    await decided(engine, fake_model, spec, "ann", "Ann likes tea.", {"title": "A", "body": "x"}, "approve")
    fake_model.script(Reply.text("not json"), Reply.text("still not"), Reply.text("never"))
    report = await run_eval(engine.db, spec, workflow="test-flow", engine_settings=engine_settings)
    (case,) = report.cases
    assert case.agreement == 0.0 and not case.schema_valid and case.got is None
    assert "not valid JSON" in (case.error or "")
    assert report.agreement == 0.0 and report.worst() == [case]


async def test_no_decided_checkpoint_is_a_clear_error(engine: Engine, engine_settings: EngineSettings, fake_model: FakeModel) -> None:
    spec = draft_spec(fake_model)
    await decided(engine, fake_model, spec, "cat", "Cat likes rye.", {"title": "C", "body": "z"}, "reject")
    with pytest.raises(NothingToEvaluate, match="no approved or edited checkpoint"):
        await run_eval(engine.db, spec, workflow="test-flow", engine_settings=engine_settings)


def test_leaves_and_agreement_by_hand() -> None:
    assert leaves({"a": {"b": 1, "c": []}, "d": [True, None]}) == {"/a/b": 1, "/a/c": [], "/d/0": True, "/d/1": None}
    assert json_agreement({"a": 1, "b": True}, {"a": 1, "b": 1}) == (0.5, ["/b"])  # True is not 1
    assert json_agreement("same", "same") == (1.0, [])
    assert text_agreement("abcd", "abcf") == pytest.approx(0.75)
