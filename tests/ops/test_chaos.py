"""`overseer serve` killed at random moments, twenty times over: nothing acknowledged is lost, nothing
completed runs twice, no step goes past its attempt limit, every failure is reported once, and no
message is posted twice."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.db import Database
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.slack_requests import slash_command
from tests.helpers.polling import eventually
from tests.helpers.runs import all_runs, attempts_of, outbox_of
from tests.ops.test_replicas import Replica, serve_env

CYCLES = 20
SPEC = """
name: chaos
channel: C0OPS
inputs:
  topic: {type: string, required: true}
steps:
  - name: one
    model: openai/gpt-4o-mini
    prompt: "one {{ inputs.topic }}"
    retry: {attempts: 2, initial_delay: 0.1, max_delay: 0.5}
  - name: two
    model: openai/gpt-4o-mini
    prompt: "two {{ steps.one.output }}"
    retry: {attempts: 2, initial_delay: 0.1, max_delay: 0.5}
"""


def chaotic_model(fake: FakeModel, seed: int) -> Counter[str]:
    """Slow and sometimes failing answers; returns the count of requests per prompt."""
    rng = random.Random(seed)
    asked: Counter[str] = Counter()
    lock = threading.Lock()

    def respond(body: dict[str, Any]) -> Reply:
        prompt = body["messages"][-1]["content"]
        with lock:
            asked[prompt] += 1
            roll = rng.random()
        if roll < 0.15:
            return Reply.status(500)
        if prompt.startswith("one") and "fail" in prompt:
            return Reply.refusal()  # a failure that must be reported, once
        return Reply.slow(rng.uniform(0.05, 0.4), Reply.text(f"ok {prompt[:40]}"))

    fake.responder = respond
    return asked


# One backend: twenty restarts take a couple of minutes, and what is checked here is the process's
# behaviour around its kills; the database-level guarantees run on both backends elsewhere.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_killed_at_random_moments_serve_loses_nothing_and_does_nothing_twice(
    db: Database, db_url: str, tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack
) -> None:
    (tmp_path / "chaos.yaml").write_text(SPEC)
    rng = random.Random(int(os.environ.get("OVERSEER_CHAOS_SEED", "7")))
    asked = chaotic_model(fake_model, rng.randrange(1 << 30))
    env = serve_env(db_url, tmp_path, fake_model, fake_slack)
    acked: list[str] = []
    for cycle in range(CYCLES):
        replica = await Replica(env, tmp_path / f"serve-{cycle}.log").start()
        try:
            await replica.healthy()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{replica.port}", timeout=5) as http:
                for i in range(2):
                    topic = f"c{cycle}-{i}" + ("-fail" if rng.random() < 0.2 else "")
                    body, headers = slash_command("test-secret", text=f"run chaos topic={topic}", channel_id="C0OPS",
                                                  response_url=fake_slack.response_url(f"chaos-{topic}"))
                    try:
                        if (await http.post("/slack/events", content=body, headers=headers)).status_code == 200:
                            acked.append(topic)
                    except httpx.HTTPError:
                        pass  # not acknowledged: Slack would tell the user it failed
                    await asyncio.sleep(rng.uniform(0, 0.4))
            await asyncio.sleep(rng.uniform(0, 1.0))
        finally:
            os.kill(replica.pid, signal.SIGKILL)
            await replica.proc.wait()  # type: ignore[union-attr]

    last = await Replica(env, tmp_path / "serve-last.log").start()
    try:
        await last.healthy()

        async def settled() -> bool:
            runs = await all_runs(db)
            pending = [m for m in await outbox_of(db) if m.delivered_at is None]
            return all(r.status in ("succeeded", "failed") for r in runs) and not pending

        await eventually(settled, 120, "every run to end and every message to go out", interval=0.5)
    finally:
        await last.stop()

    runs = await all_runs(db)
    by_topic = {r.inputs["topic"]: r for r in runs}
    assert set(acked) <= set(by_topic), "an acknowledged command was lost"
    for run in runs:
        tried = await attempts_of(db, run.id)
        done = Counter(a.step for a in tried if a.status == "succeeded")
        assert all(n == 1 for n in done.values()), f"a completed step ran twice in {run.id}: {done}"
    for prompt, n in asked.items():
        assert n <= 2, f"{prompt!r} was asked {n} times, past its limit of 2"
    posts = fake_slack.posted("C0OPS")
    stamps = [json.dumps(m.get("metadata"), sort_keys=True) for m in posts if m.get("metadata")]
    assert len(stamps) == len(set(stamps)), "a message was posted twice"
    parents = Counter(m.get("text", "").split(":")[0] for m in posts if "thread_ts" not in m)
    assert all(n == 1 for n in parents.values()), f"a run got two parent messages: {parents}"
    for run in runs:
        failures = [m for m in await outbox_of(db, run.id) if m.kind == "step_failed"]
        reports = [m for m in fake_slack.posted("C0OPS", thread_ts=run.message_ts) if "failed*" in json.dumps(m.get("blocks"))]
        assert len(reports) == len(failures), f"run {run.id}: {len(failures)} failures, {len(reports)} reports"
