"""The engine runs steps in order, retries honestly, records every attempt, and stops at checkpoints."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from agents.engine import Engine
from agents.errors import AlreadyDecided, ContractViolation, InvalidInputs, InvalidState
from agents.spec import WorkflowSpec
from storage import run_queries
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.runs import attempts_of, get_run, outbox_kinds
from tests.helpers.specs import model_spec


async def run_to_rest(engine: Engine, spec: WorkflowSpec, **inputs: Any) -> tuple[str, str]:
    run_id = await engine.start(spec, inputs, started_by="tester")
    return run_id, await engine.advance(run_id)


def one_checkpoint(fake_model: FakeModel) -> WorkflowSpec:
    """A draft that waits for U0ALICE, and nothing after it."""
    return model_spec(fake_model, approvers=["U0ALICE"], steps=[
        {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "w", "checkpoint": True}])


async def test_a_run_renders_prompts_records_the_attempt_and_succeeds(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("hello, Ada"))
    spec = model_spec(fake_model)
    run_id, status = await run_to_rest(engine, spec, who="Ada")
    assert status == "succeeded"
    body = fake_model.requests[0].body
    assert body["messages"][-1] == {"role": "user", "content": "Say hi to Ada"}
    [attempt] = await attempts_of(engine, run_id)
    assert attempt.raw_output == "hello, Ada"
    assert attempt.parsed_output == "hello, Ada"
    assert attempt.input["messages"][-1]["content"] == "Say hi to Ada"
    assert (attempt.tokens_in, attempt.tokens_out) == (10, 5)
    assert attempt.cost_usd > 0  # gpt-4o-mini is priced in litellm's local cost map
    assert attempt.latency_ms > 0
    assert await outbox_kinds(engine, run_id) == ["run_started", "step_started", "step_succeeded", "run_finished"]


async def test_with_three_attempts_and_a_model_that_always_fails_exactly_three_requests_are_made(
    engine: Engine, fake_model: FakeModel
) -> None:
    fake_model.default = Reply.status(500)
    spec = model_spec(fake_model, steps=[{"name": "s", "model": "openai/gpt-4o-mini", "prompt": "x", "retry": {"attempts": 3}}])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "failed"
    assert fake_model.count == 3
    tried = await attempts_of(engine, run_id)
    assert [a.number for a in tried] == [1, 2, 3]
    assert all(a.error_type == "TransientError" for a in tried)
    assert [a.backoff_s is not None for a in tried] == [True, True, False]
    kinds = await outbox_kinds(engine, run_id)
    assert kinds.count("attempt_failed") == 3 and kinds[-1] == "step_failed"


async def test_fallback_models_get_their_own_attempts_recorded_as_such(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script_for("gpt-4o-mini", Reply.status(503), Reply.status(503))
    fake_model.script_for("gpt-4o", Reply.text("from the fallback"))
    spec = model_spec(fake_model, steps=[{
        "name": "s", "model": "openai/gpt-4o-mini", "fallbacks": ["openai/gpt-4o"], "prompt": "x", "retry": {"attempts": 2},
    }])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "succeeded"
    assert fake_model.count_for("gpt-4o-mini") == 2 and fake_model.count_for("gpt-4o") == 1
    tried = await attempts_of(engine, run_id)
    assert [(a.model, a.fallback_index, a.model_attempt) for a in tried] == [
        ("openai/gpt-4o-mini", 0, 1), ("openai/gpt-4o-mini", 0, 2), ("openai/gpt-4o", 1, 1),
    ]


@pytest.mark.parametrize("reply", [Reply.status(400), Reply.status(401), Reply.status(403), Reply.status(404), Reply.refusal()])
async def test_permanent_errors_fail_the_step_at_once_without_retry(engine: Engine, fake_model: FakeModel, reply: Reply) -> None:
    fake_model.default = reply
    spec = model_spec(fake_model, steps=[{"name": "s", "model": "openai/gpt-4o-mini", "fallbacks": ["openai/gpt-4o"], "prompt": "x"}])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "failed"
    assert fake_model.count == 1
    run = await get_run(engine, run_id)
    assert run.error.startswith("s: ")


@pytest.mark.parametrize(("key_env", "named"), [(None, "OPENAI_API_KEY"), ("GATEWAY_KEY", "GATEWAY_KEY")])
async def test_a_missing_api_key_fails_the_step_at_once_naming_the_variable(
    engine: Engine, fake_model: FakeModel, monkeypatch: pytest.MonkeyPatch, key_env: str | None, named: str
) -> None:
    """Not a 500 worth retrying: one attempt, no fallback, and the error says which variable to set."""
    monkeypatch.delenv("OPENAI_API_KEY")
    spec = model_spec(fake_model, steps=[{"name": "s", "model": "openai/gpt-4o-mini", "fallbacks": ["openai/gpt-4o"],
                                          "api_key_env": key_env, "prompt": "x", "retry": {"attempts": 4}}])
    started = time.monotonic()
    run_id, status = await run_to_rest(engine, spec)
    assert status == "failed" and time.monotonic() - started < 3
    [attempt] = await attempts_of(engine, run_id)
    assert attempt.error_type == "MissingCredentials" and f"{named} " in attempt.error_message and "not set" in attempt.error_message
    assert (await get_run(engine, run_id)).error.startswith(f"s: {named}")
    assert fake_model.count == 0  # the SDK refused before any request


async def test_a_429_waits_at_least_its_retry_after(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.status(429, retry_after=0.4), Reply.text("ok now"))
    spec = model_spec(fake_model, steps=[{"name": "s", "model": "openai/gpt-4o-mini", "prompt": "x"}])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "succeeded"
    first, second = fake_model.requests
    assert (second.at - first.at) >= 0.4
    tried = await attempts_of(engine, run_id)
    assert tried[0].error_type == "RateLimited" and tried[0].backoff_s >= 0.4


async def test_malformed_bodies_and_timeouts_are_retried(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.malformed(), Reply.slow(2.0, Reply.text("too late")), Reply.text("fine"))
    spec = model_spec(fake_model, steps=[{"name": "s", "model": "openai/gpt-4o-mini", "prompt": "x", "timeout": 0.5}])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "succeeded"
    tried = await attempts_of(engine, run_id)
    assert len(tried) == 3 and tried[1].error_type == "CallTimeout"


async def test_output_that_breaks_the_contract_is_retried_with_feedback(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("not json"), Reply.json({"title": "x" * 80, "body": "b"}), Reply.json({"title": "T", "body": "B"}))
    spec = model_spec(fake_model, steps=[{
        "name": "draft", "model": "openai/gpt-4o-mini", "prompt": "write",
        "output": {"format": "json", "schema": {"type": "object", "required": ["title", "body"],
                   "properties": {"title": {"type": "string", "maxLength": 70}, "body": {"type": "string"}}}},
    }])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "succeeded"
    tried = await attempts_of(engine, run_id)
    assert [a.error_type for a in tried] == ["BadOutput", "BadOutput", None]
    assert "not valid JSON" in tried[0].error_message and "title" in tried[1].error_message
    third = fake_model.requests[2].body["messages"]
    assert third[-2]["role"] == "assistant" and "title" in third[-1]["content"]
    assert tried[2].parsed_output == {"title": "T", "body": "B"}


async def test_an_empty_answer_is_garbage_too(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.default = Reply.text("   ")
    spec = model_spec(fake_model, steps=[{"name": "s", "model": "openai/gpt-4o-mini", "prompt": "x", "retry": {"attempts": 2}}])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "failed" and fake_model.count == 2
    assert "empty" in (await attempts_of(engine, run_id))[-1].error_message


async def test_later_steps_see_earlier_outputs_and_completed_steps_are_not_rerun(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "T", "body": "the body"}), Reply.text("audit"))
    spec = model_spec(fake_model, steps=[
        {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "write",
         "output": {"format": "json", "schema": {"type": "object", "properties": {"body": {"type": "string"}}}}},
        {"name": "seo-audit", "model": "openai/gpt-4o-mini", "prompt": "Audit: {{ steps.draft.output.body }}"},
    ])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "succeeded"
    assert fake_model.requests[1].body["messages"][-1]["content"] == "Audit: the body"
    assert await engine.advance(run_id) == "succeeded" and fake_model.count == 2


async def test_a_checkpoint_waits_in_the_database_and_approve_continues(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("draft v1"), Reply.text("final"))
    spec = model_spec(fake_model, approvers=["U0ALICE"], steps=[
        {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "write", "checkpoint": True},
        {"name": "next", "model": "openai/gpt-4o-mini", "prompt": "polish {{ steps.draft.output }}"},
    ])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "awaiting_approval" and fake_model.count == 1
    outcome = await engine.decide(run_id, "draft", action="approve", by="U0ALICE")
    assert outcome.run_status == "queued"
    assert await engine.advance(run_id) == "succeeded"
    assert fake_model.requests[1].body["messages"][-1]["content"] == "polish draft v1"


async def test_an_edit_must_satisfy_the_contract_else_nothing_changes(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "T", "body": "B"}), Reply.text("done"))
    schema = {"type": "object", "required": ["title", "body"], "properties": {"title": {"type": "string"}, "body": {"type": "string"}}}
    spec = model_spec(fake_model, approvers=["U0ALICE"], steps=[
        {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "w", "checkpoint": True, "output": {"format": "json", "schema": schema}},
        {"name": "use", "model": "openai/gpt-4o-mini", "prompt": "{{ steps.draft.output.title }}"},
    ])
    run_id, _ = await run_to_rest(engine, spec)
    with pytest.raises(ContractViolation, match="body"):
        await engine.decide(run_id, "draft", action="edit", by="U0ALICE", edited=json.dumps({"title": "only"}))
    assert await engine.status(run_id) == "awaiting_approval"
    outcome = await engine.decide(run_id, "draft", action="edit", by="U0ALICE", edited='{"title": "Better", "body": "B"}')
    assert outcome.chars_changed > 0
    assert await engine.advance(run_id) == "succeeded"
    assert fake_model.requests[1].body["messages"][-1]["content"] == "Better"
    async with engine.db.sessions() as session:
        [decision] = await run_queries.decisions(session=session, run_id=run_id)
    assert decision.original_output == {"title": "T", "body": "B"} and decision.edited_output["title"] == "Better"
    assert decision.workflow == spec.name  # copied at insert: the digest groups decisions by it, no join


async def test_reject_ends_the_run_and_a_second_decision_learns_who_was_first(engine: Engine, fake_model: FakeModel) -> None:
    spec = one_checkpoint(fake_model)
    run_id, _ = await run_to_rest(engine, spec)
    await engine.decide(run_id, "draft", action="reject", by="U0ALICE", reason="off brand")
    with pytest.raises(AlreadyDecided) as info:
        await engine.decide(run_id, "draft", action="approve", by="U0BOB")
    assert info.value.decided_by == "U0ALICE" and info.value.action == "reject"
    assert await engine.status(run_id) == "rejected"


async def test_racing_decisions_record_exactly_one(engine: Engine, fake_model: FakeModel) -> None:
    import asyncio

    spec = one_checkpoint(fake_model)
    run_id, _ = await run_to_rest(engine, spec)
    results = await asyncio.gather(
        *(engine.decide(run_id, "draft", action=a, by=f"U0{i}") for i, a in enumerate(["approve", "reject"] * 3)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, AlreadyDecided) and r.decided_by == winners[0].decided_by for r in results if r not in winners)
    async with engine.db.sessions() as session:
        assert len(await run_queries.decisions(session=session, run_id=run_id)) == 1


async def test_budget_stops_the_run_before_a_call_that_would_exceed_it(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.default = Reply.text("x", prompt_tokens=100_000, completion_tokens=100_000)
    spec = model_spec(fake_model, budget_usd=0.05, steps=[
        {"name": "a", "model": "openai/gpt-4o-mini", "prompt": "x"},
        {"name": "b", "model": "openai/gpt-4o-mini", "prompt": "y"},
    ])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "failed" and fake_model.count == 1  # a cost $0.075; b was never called
    run = await get_run(engine, run_id)
    assert "budget" in run.error and run.cost_usd == pytest.approx(0.075)


async def test_a_failed_run_can_be_retried_from_its_failed_step_with_edited_input(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("one"), Reply.status(400))
    spec = model_spec(fake_model, steps=[
        {"name": "a", "model": "openai/gpt-4o-mini", "prompt": "first"},
        {"name": "b", "model": "openai/gpt-4o-mini", "prompt": "second {{ steps.a.output }}"},
    ])
    run_id, status = await run_to_rest(engine, spec)
    assert status == "failed"
    with pytest.raises(InvalidState):
        await engine.decide(run_id, "b", action="approve", by="U0ALICE")
    await engine.retry(run_id, by="U0ALICE", step_input={"system": None, "prompt": "second, edited"})
    fake_model.script(Reply.text("two"))
    assert await engine.advance(run_id) == "succeeded"
    assert fake_model.count == 3  # a was not run again
    assert fake_model.requests[2].body["messages"][-1]["content"] == "second, edited"
    assert [a.number for a in await attempts_of(engine, run_id, "b")] == [1, 2]
    with pytest.raises(InvalidState):
        await engine.retry(run_id, by="U0ALICE")


async def test_bad_inputs_are_refused_before_anything_is_recorded(engine: Engine, fake_model: FakeModel) -> None:
    spec = model_spec(fake_model)
    with pytest.raises(InvalidInputs, match="unknown input 'whom'"):
        await engine.start(spec, {"whom": "x"}, started_by="t")
    async with engine.db.sessions() as session:
        assert await run_queries.list_runs(session=session) == []


async def test_cancel_stops_a_waiting_run(engine: Engine, fake_model: FakeModel) -> None:
    spec = one_checkpoint(fake_model)
    run_id, _ = await run_to_rest(engine, spec)
    await engine.cancel(run_id, by="U0ALICE")
    assert await engine.status(run_id) == "cancelled"
    with pytest.raises(InvalidState):
        await engine.decide(run_id, "draft", action="approve", by="U0ALICE")
