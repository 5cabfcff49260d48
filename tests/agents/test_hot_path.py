"""The driver's hot path: fewer transactions per step, same records, same announcements in order."""

from __future__ import annotations

from typing import Any

from agents.engine import Engine
from storage import run_queries
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.runs import attempts_of, get_run, outbox_kinds, steps_of
from tests.helpers.specs import model_spec

THREE = [
    {"name": "one", "model": "openai/gpt-4o-mini", "prompt": "Write about {{ inputs.who }}"},
    {"name": "two", "model": "openai/gpt-4o-mini", "prompt": "Shorten: {{ steps.one.output }}"},
    {"name": "three", "model": "openai/gpt-4o-mini", "prompt": "Title for: {{ steps.two.output }}"},
]


async def test_three_steps_record_everything_and_announce_in_order(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("a"), Reply.text("b"), Reply.text("c"))
    spec = model_spec(fake_model, steps=THREE)
    run_id = await engine.start(spec, {"who": "Ada"}, started_by="tester")
    assert await engine.advance(run_id) == "succeeded"
    assert await outbox_kinds(engine, run_id) == [
        "run_started",
        "step_started", "step_succeeded",
        "step_started", "step_succeeded",
        "step_started", "step_succeeded",
        "run_finished",
    ]
    steps = await steps_of(engine, run_id)
    assert [(s.status, s.output, s.attempts) for s in steps] == [("succeeded", "a", 1), ("succeeded", "b", 1), ("succeeded", "c", 1)]
    assert steps[1].input["prompt"] == "Shorten: a" and steps[2].input["prompt"] == "Title for: b"
    assert all(s.started_at is not None and s.finished_at is not None and s.awaiting_since is None for s in steps)
    attempts = await attempts_of(engine, run_id)
    assert [(a.step, a.number, a.raw_output) for a in attempts] == [("one", 1, "a"), ("two", 1, "b"), ("three", 1, "c")]
    assert {a.workflow for a in attempts} == {spec.name}  # copied at insert: the digest groups by it, no join
    run = await get_run(engine, run_id)
    assert run is not None and run.status == "succeeded" and run.lease_owner is None and run.current_step is None
    assert run.tokens_in == sum(a.tokens_in for a in attempts) and run.cost_usd == sum(a.cost_usd for a in attempts)
    assert run.finished_at is not None and run.started_at is not None


async def test_the_next_step_is_started_in_the_transaction_that_records_the_previous(
    engine: Engine, fake_model: FakeModel
) -> None:
    """Seen from the model's side: when step two is called, it is already recorded running with its input."""
    seen: list[Any] = []
    spec = model_spec(fake_model, steps=THREE)
    run_id = await engine.start(spec, {"who": "Ada"}, started_by="tester")

    original = engine.caller.call

    async def spy(run: str, spec: Any, step: Any, call_input: Any, **kw: Any) -> Any:
        seen.append([(s.step, s.status, s.input) for s in await steps_of(engine, run)])
        return await original(run, spec, step, call_input, **kw)

    engine.caller.call = spy  # type: ignore[method-assign]
    fake_model.script(Reply.text("a"), Reply.text("b"), Reply.text("c"))
    assert await engine.advance(run_id) == "succeeded"
    assert [row[1] for row in seen[1]] == ["succeeded", "running", "pending"]
    assert seen[1][1][2]["prompt"] == "Shorten: a"


async def test_a_lost_lease_stops_the_step_transaction_whole(engine: Engine, fake_model: FakeModel) -> None:
    """The fence fails: neither the attempt's end nor the step result nor the next step's start is written.

    The attempt itself stays on record as started (it was recorded before its call): the call was made."""
    spec = model_spec(fake_model, steps=THREE)
    run_id = await engine.start(spec, {"who": "Ada"}, started_by="tester")
    original = engine.caller.call

    async def steal(run: str, *args: Any, **kw: Any) -> Any:
        result = await original(run, *args, **kw)
        async with engine.db.sessions.begin() as session:
            await run_queries.set_run_status(session=session, run_id=run, to="running", allowed_from=("running",), lease_owner="other")
        return result

    engine.caller.call = steal  # type: ignore[method-assign]
    fake_model.script(Reply.text("a"))
    assert await engine.advance(run_id) == "running"
    [attempt] = await attempts_of(engine, run_id)
    assert (attempt.status, attempt.raw_output, attempt.cost_usd) == ("started", None, 0.0)
    assert [s.status for s in await steps_of(engine, run_id)] == ["running", "pending", "pending"]
    assert await outbox_kinds(engine, run_id) == ["run_started", "step_started"]


async def test_a_checkpoint_parks_the_run_in_the_step_transaction(engine: Engine, fake_model: FakeModel) -> None:
    spec = model_spec(fake_model, steps=[{**THREE[0], "checkpoint": True}, THREE[1]], approvers=["U0ALICE"])
    fake_model.script(Reply.text("a"), Reply.text("b"))
    run_id = await engine.start(spec, {"who": "Ada"}, started_by="tester")
    assert await engine.advance(run_id) == "awaiting_approval"
    assert await outbox_kinds(engine, run_id) == ["run_started", "step_started", "checkpoint_waiting"]
    [first, second] = await steps_of(engine, run_id)
    assert first.status == "awaiting_approval" and first.awaiting_since is not None and second.status == "pending"
    await engine.decide(run_id, "one", action="approve", by="U0ALICE")
    assert await engine.advance(run_id) == "succeeded"
    assert (await outbox_kinds(engine, run_id))[3:] == ["checkpoint_decided", "step_started", "step_succeeded", "run_finished"]
