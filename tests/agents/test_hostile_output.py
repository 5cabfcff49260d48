"""A hostile model cannot crash a run or make its record unstorable: the run ends, and what it said is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.engine import Engine
from agents.errors import ContractViolation
from agents.loading import parse_spec
from agents.spec import WorkflowSpec
from storage import outbox_queries, run_queries
from storage.models import Attempt
from tests.fakes.fake_model import FakeModel, Reply

DEEP = "[" * 5000 + "]" * 5000


def one_step(fake: FakeModel, **step: Any) -> WorkflowSpec:
    base = {"name": "s", "model": "openai/gpt-4o-mini", "prompt": "x", "api_base": fake.api_base, "api_key_env": "FAKE_KEY"}
    return parse_spec({"name": "hostile", "approvers": ["U0ALICE"], "steps": [{**base, **step}]}, "hostile.yaml")


async def run_to_rest(engine: Engine, spec: WorkflowSpec) -> tuple[str, str]:
    run_id = await engine.start(spec, {}, started_by="tester")
    return run_id, await engine.advance(run_id)


async def attempts_of(engine: Engine, run_id: str) -> list[Attempt]:
    async with engine.db.sessions() as session:
        return list(await run_queries.attempts(session=session, run_id=run_id))


async def test_json_nested_too_deep_fails_each_attempt_and_the_run_ends_failed(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.default = Reply.text(DEEP)
    spec = one_step(fake_model, output={"format": "json"}, retry={"attempts": 2})
    run_id, status = await run_to_rest(engine, spec)
    assert status == "failed" and await engine.status(run_id) == "failed" and fake_model.count == 2
    tried = await attempts_of(engine, run_id)
    assert [a.error_type for a in tried] == ["BadOutput", "BadOutput"]
    assert all("nested deeper than 64 levels" in (a.error_message or "") for a in tried)
    assert tried[0].raw_output == DEEP
    assert "contract" in fake_model.requests[1].body["messages"][-1]["content"]  # retried with feedback
    async with engine.db.sessions() as session:
        kinds = [m.kind for m in await outbox_queries.outbox_since(session=session, after_id=0, run_id=run_id)]
    assert "step_failed" in kinds


async def test_a_schema_step_is_as_safe_as_a_bare_json_one(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text(DEEP), Reply.text("NaN"), Reply.json({"items": ["a"]}))
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#"}}}}
    spec = one_step(fake_model, output={"format": "json", "schema": schema}, retry={"attempts": 3})
    run_id, status = await run_to_rest(engine, spec)
    tried = await attempts_of(engine, run_id)
    assert [a.error_type for a in tried] == ["BadOutput", "BadOutput", "BadOutput"] and status == "failed"
    assert "nested deeper" in tried[0].error_message and "NaN" in tried[1].error_message


async def test_an_edit_nested_too_deep_is_refused_and_nothing_changes(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"a": 1}))
    spec = one_step(fake_model, output={"format": "json"}, checkpoint=True)
    run_id, status = await run_to_rest(engine, spec)
    assert status == "awaiting_approval"
    with pytest.raises(ContractViolation, match="nested deeper than 64 levels"):
        await engine.decide(run_id, "s", action="edit", by="U0ALICE", edited=DEEP)
    assert await engine.status(run_id) == "awaiting_approval"


async def test_nul_and_lone_surrogates_in_text_output_are_stored_replaced(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("a\x00b \ud800 c"))
    run_id, status = await run_to_rest(engine, one_step(fake_model))
    assert status == "succeeded"
    [attempt] = await attempts_of(engine, run_id)
    assert attempt.raw_output == attempt.parsed_output == "a\ufffdb \ufffd c"
    async with engine.db.sessions() as session:
        [step] = await run_queries.step_runs(session=session, run_id=run_id)
    assert step.output == "a\ufffdb \ufffd c"


async def test_nul_in_json_output_keys_and_values_is_stored_replaced(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text(json.dumps({"k\x00": ["v\x00", {"n": "\x00"}]})))
    run_id, status = await run_to_rest(engine, one_step(fake_model, output={"format": "json"}))
    assert status == "succeeded"
    [attempt] = await attempts_of(engine, run_id)
    assert attempt.parsed_output == {"k\ufffd": ["v\ufffd", {"n": "\ufffd"}]}
    assert json.loads(attempt.raw_output) == {"k\x00": ["v\x00", {"n": "\x00"}]}  # the escapes are plain text


async def test_a_failing_attempt_with_nul_everywhere_is_recorded_and_reported(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.default = Reply.text("\x00 not json \x00")
    run_id, status = await run_to_rest(engine, one_step(fake_model, output={"format": "json"}, retry={"attempts": 2}))
    assert status == "failed"
    tried = await attempts_of(engine, run_id)
    assert len(tried) == 2 and tried[0].raw_output == "\ufffd not json \ufffd"
    async with engine.db.sessions() as session:
        [failed] = [m for m in await outbox_queries.outbox_since(session=session, after_id=0, run_id=run_id) if m.kind == "step_failed"]
    assert "\x00" not in json.dumps(failed.payload, ensure_ascii=False)

