"""A run always ends: attempts cut off by a crash are counted (the limit holds across restarts), a run
its drivers keep dying with ends failed, and every wait is bounded."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from sqlalchemy import update

from agents.engine import Engine, EngineSettings
from agents.runner import Runner
from storage.db import Database
from storage.models import Run, utcnow
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.polling import eventually
from tests.helpers.runs import attempts_of, get_run, outbox_kinds, steps_of
from tests.helpers.specs import model_spec

ONE_STEP = [{"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "Write about tea", "retry": {"attempts": 2}}]


async def crash_mid_call(engine: Engine, fake: FakeModel, run_id: str) -> None:
    """Drive the run until its model call is in flight, then leave it as a killed process would:
    still running, its attempt started, its lease held by a process that is gone."""
    release = threading.Event()
    before = fake.count
    fake.script(Reply.hang(release))
    task = asyncio.create_task(engine.advance(run_id))
    try:
        await eventually(lambda: fake.count == before + 1, 10, "the model call to be in flight")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        release.set()
    async with engine.db.sessions.begin() as session:
        await session.execute(
            update(Run).where(Run.id == run_id)
            .values(status="running", lease_owner="gone:1:dead", lease_expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_an_attempt_cut_off_by_a_crash_counts_against_the_limit_and_is_charged(engine: Engine, fake_model: FakeModel) -> None:
    run_id = await engine.start(model_spec(fake_model, steps=ONE_STEP), {}, started_by="tester")
    await crash_mid_call(engine, fake_model, run_id)

    fake_model.script(Reply.status(500))
    assert await engine.advance(run_id) == "failed"
    assert fake_model.count == 2  # attempts: 2 means two requests, the cut-off one included
    tried = await attempts_of(engine, run_id)
    assert [(a.number, a.status) for a in tried] == [(1, "interrupted"), (2, "failed")]
    assert tried[0].cost_usd > 0  # its cost is estimated from what it was sent
    run = await get_run(engine, run_id)
    assert run.cost_usd >= tried[0].cost_usd
    [step] = await steps_of(engine, run_id)
    assert step.attempts == 2 and step.status == "failed"
    assert (await outbox_kinds(engine, run_id)).count("attempt_failed") == 2  # the cut-off one is announced too


async def test_a_crash_after_the_last_attempt_started_fails_the_step_without_another_call(
    engine: Engine, fake_model: FakeModel
) -> None:
    spec = model_spec(fake_model, steps=[{**ONE_STEP[0], "retry": {"attempts": 1}}])
    run_id = await engine.start(spec, {}, started_by="tester")
    await crash_mid_call(engine, fake_model, run_id)
    assert await engine.advance(run_id) == "failed"
    assert fake_model.count == 1
    run = await get_run(engine, run_id)
    assert "no attempts left" in (run.error or "")


async def test_a_run_its_drivers_keep_dying_with_ends_failed_and_can_be_retried(engine: Engine, fake_model: FakeModel) -> None:
    run_id = await engine.start(model_spec(fake_model, steps=[{**ONE_STEP[0], "retry": {"attempts": 9}}]), {},
                                started_by="tester")
    for _ in range(3):  # three drivers die with it; the next claim ends it
        await crash_mid_call(engine, fake_model, run_id)
    calls = fake_model.count
    assert await engine.advance(run_id) == "failed"
    assert fake_model.count == calls  # not called once more
    run = await get_run(engine, run_id)
    assert "crashed 3 times while running draft" in (run.error or "")
    assert (await outbox_kinds(engine, run_id))[-1] == "step_failed"

    await engine.retry(run_id, by="U0BOSS")
    fake_model.script(Reply.text("tea, at last"))
    assert await engine.advance(run_id) == "succeeded"


async def test_a_retry_after_longer_than_max_delay_is_not_waited(engine: Engine, fake_model: FakeModel) -> None:
    spec = model_spec(fake_model, steps=[{**ONE_STEP[0], "retry": {"attempts": 3, "max_delay": 30}}])
    run_id = await engine.start(spec, {}, started_by="tester")
    fake_model.script(Reply.status(429, retry_after=999999))
    assert await asyncio.wait_for(engine.advance(run_id), 30) == "failed"
    [attempt] = await attempts_of(engine, run_id)
    assert "999999" in (attempt.error_message or "") and "max_delay" in (attempt.error_message or "")
    assert attempt.backoff_s is None and fake_model.count == 1


async def test_a_run_waiting_out_a_backoff_holds_no_slot(db: Database, fake_model: FakeModel) -> None:
    """One slot: while the slow workflow waits out its provider's Retry-After, another workflow's run goes."""
    engine = Engine(db, settings=EngineSettings(owner="slots", lease_seconds=5.0, delay_scale=0.001))
    slow = model_spec(fake_model, name="slow", steps=[{**ONE_STEP[0], "name": "slow"}])
    quick = model_spec(fake_model, name="quick", steps=[{**ONE_STEP[0], "name": "quick", "prompt": "Be quick"}])

    slow_calls = {"n": 0}

    def respond(body: dict) -> Reply:
        if "quick" in str(body["messages"]).lower():
            return Reply.text("done")
        slow_calls["n"] += 1  # the provider asks the slow run to come back in 2 s, once
        return Reply.status(429, retry_after=2) if slow_calls["n"] == 1 else Reply.text("slow")

    fake_model.responder = respond
    runner = Runner(engine, concurrency=1, poll_seconds=0.05)
    loop = asyncio.create_task(runner.run_forever())
    try:
        slow_id = await engine.start(slow, {}, started_by="tester")
        runner.kick()
        await eventually(lambda: fake_model.count >= 1, 10, "the slow run's first call")
        quick_id = await engine.start(quick, {}, started_by="tester")
        runner.kick()
        await eventually(lambda: fake_model.count >= 3, 15, "both runs to finish their calls")
        order = ["quick" if "quick" in str(r.body).lower() else "slow" for r in fake_model.requests]
        assert order[:3] == ["slow", "quick", "slow"]  # the quick run went while the slow one waited
        await runner.wait_idle(15)
        assert (await get_run(engine, quick_id)).status == "succeeded"
        assert (await get_run(engine, slow_id)).status == "succeeded"
    finally:
        await runner.stop()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
