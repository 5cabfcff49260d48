"""Concurrency is a setting: OVERSEER_MAX_RUNS runs at work at once, the rest wait queued, a backoff frees a slot."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agents.engine import Engine, EngineSettings
from agents.runner import Runner
from bot.settings import Settings
from storage.db import Database
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.polling import eventually
from tests.helpers.runs import get_run
from tests.helpers.specs import model_spec


def test_max_runs_is_read_from_the_environment_with_a_default_of_64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERSEER_MAX_RUNS", raising=False)
    assert Settings().max_runs == 64
    monkeypatch.setenv("OVERSEER_MAX_RUNS", "2")
    assert Settings().max_runs == 2


async def test_with_two_slots_two_of_three_runs_drive_one_waits_queued_and_a_backoff_lets_it_go(
    db: Database, fake_model: FakeModel
) -> None:
    engine = Engine(db, settings=EngineSettings(owner="cap", lease_seconds=5.0, delay_scale=0.001))
    names = ("alpha", "beta", "gamma")
    specs = {n: model_spec(fake_model, name=n, steps=[{"name": "s", "model": "openai/gpt-4o-mini", "prompt": f"I am {n}"}])
             for n in names}
    release = threading.Event()
    asked: dict[str, int] = {n: 0 for n in names}

    def respond(body: dict) -> Reply:
        who = next(n for n in names if n in str(body["messages"]))
        asked[who] += 1
        if who == "alpha":
            return Reply.hang(release)  # holds its slot until the end
        if who == "beta" and asked[who] == 1:  # busy for 2 s, then its provider says: come back in 3 s
            return Reply.slow(2.0, Reply.status(429, retry_after=3))
        return Reply.text("done")

    fake_model.responder = respond
    runner = Runner(engine, concurrency=2, poll_seconds=0.05)
    ids = {n: await engine.start(specs[n], {}, started_by="tester") for n in names}
    loop = asyncio.create_task(runner.run_forever())
    try:
        await eventually(lambda: asked["alpha"] and asked["beta"], 10, "two runs to be calling their model")
        await asyncio.sleep(0.3)
        assert asked["gamma"] == 0 and runner.slots.busy == 2
        assert (await get_run(engine, ids["gamma"])).status == "queued"  # waits its turn, never failed

        # beta waits out its backoff holding no slot: gamma goes meanwhile, alpha still at work.
        await eventually(lambda: asked["gamma"] == 1, 5, "the queued run to start while another waits out a backoff")
        assert asked["beta"] == 1 and not release.is_set()
        assert (await get_run(engine, ids["gamma"])).status != "queued"
        release.set()
        await runner.wait_idle(20)
        assert [(await get_run(engine, ids[n])).status for n in names] == ["succeeded"] * 3
    finally:
        release.set()
        await runner.stop()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
