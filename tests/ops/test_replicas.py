"""Real `overseer serve` processes on one database: nothing runs, fires or posts twice; a dead replica's
runs are taken over; SQLite refuses a second server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from agents.digest import compute_digest
from agents.engine import Engine, EngineSettings
from agents.loading import load_spec
from bot.scheduler import seen_key
from storage import claim_queries, run_queries
from storage.db import Database
from storage.models import Attempt, ChatMessage, Claim, OutboxMessage, Run, utcnow
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import FakeSlack
from tests.helpers.network import answers_healthz, free_port
from tests.helpers.polling import eventually
from tests.helpers.processes import overseer_env, spawn_overseer
from tests.helpers.prompts import answer_by_prompt

SPEC = """
name: minutely
channel: C0OPS
inputs:
  topic: {type: string, default: tick}
schedule:
  cron: "* * * * *"
  inputs: {topic: scheduled}
steps:
  - name: one
    model: openai/gpt-4o-mini
    prompt: "one {{ inputs.topic }}"
  - name: two
    model: openai/gpt-4o-mini
    prompt: "two {{ steps.one.output }}"
"""

PG_ONLY = pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)


class Replica:
    """One `overseer serve` subprocess."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.env = env | {"PORT": str(self.port), "OVERSEER_HOST": "127.0.0.1"}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Replica:
        self.proc = await spawn_overseer(self.env, "serve", stdout=self.log.open("wb"), stderr=asyncio.subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def healthy(self, timeout: float = 60) -> None:
        async with httpx.AsyncClient() as client:

            async def up() -> bool:
                assert self.proc is not None and self.proc.returncode is None, self.log.read_text()[-3000:]
                return await answers_healthz(client, f"http://127.0.0.1:{self.port}/healthz")

            await eventually(up, timeout, lambda: f"the replica to become healthy:\n{self.log.read_text()[-3000:]}", interval=0.2)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def serve_env(db_url: str, workflows: Path, fake_model: FakeModel, fake_slack: FakeSlack) -> dict[str, str]:
    return overseer_env(
        DATABASE_URL=db_url, OVERSEER_WORKFLOWS=str(workflows), SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="test-secret", SLACK_API_URL=fake_slack.api_url, OPENAI_BASE_URL=fake_model.api_base,
        OPENAI_API_KEY="sk-fake", OVERSEER_LEASE_SECONDS="3", OVERSEER_POLL_SECONDS="0.2",
        OVERSEER_RETRY_DELAY_SCALE="0.01", OVERSEER_LOG_FORMAT="json",
    )


@PG_ONLY
async def test_two_replicas_one_killed_mid_step_run_every_step_fire_every_tick_and_post_every_message_once(
    db: Database, db_url: str, tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack
) -> None:
    (tmp_path / "minutely.yaml").write_text(SPEC)
    release = threading.Event()

    def respond(prompt: str, nth: int) -> Reply:
        if prompt == "one run3" and nth == 1:
            return Reply.hang(release)  # the step in flight when its replica is killed
        return Reply.slow(0.2, Reply.text(f"done {prompt}"))

    prompts = answer_by_prompt(fake_model, respond)
    env = serve_env(db_url, tmp_path, fake_model, fake_slack)
    replicas = [Replica(env, tmp_path / "a.log"), Replica(env, tmp_path / "b.log")]
    async with db.sessions.begin() as session:  # seen before, so the start-up catch-up has a tick to fire
        await claim_queries.try_claim(session=session, key=seen_key("minutely", "* * * * *", "UTC"), owner="test")
    try:
        for replica in replicas:
            await replica.start()
        for replica in replicas:
            await replica.healthy()
        # Both replicas were alive for the start-up catch-up of the latest minute's tick.
        engine = Engine(db, settings=EngineSettings(owner="test"))
        spec = load_spec(tmp_path / "minutely.yaml")
        run_ids = [await engine.start(spec, {"topic": f"run{i}"}, started_by="U0TEST", trigger="slack") for i in range(6)]

        async def in_flight() -> Run | None:
            async with db.sessions() as session:
                run = await run_queries.get_run(session=session, run_id=run_ids[3])
            return run if run and run.lease_owner and prompts["one run3"] == 1 else None

        hung = await eventually(in_flight, 60, "run3's first step to be in flight")

        async def announced() -> bool:
            # Kill between deliveries: a post Slack accepted but the dying replica had not yet recorded
            # would be posted again (Slack has no idempotency key; see the README's limits).
            async with db.sessions() as session:
                return not (await session.scalars(select(OutboxMessage.id).where(OutboxMessage.delivered_at.is_(None)))).all()

        await eventually(announced, 30, "the new runs' messages to be delivered")
        victim = next(r for r in replicas if r.pid == int(hung.lease_owner.split(":")[1]))
        with prompts.lock:
            asked_before_kill = set(prompts)
        os.kill(victim.pid, signal.SIGKILL)
        await victim.proc.wait()  # type: ignore[union-attr]
        release.set()

        async def all_done() -> bool:
            async with db.sessions() as session:
                runs = list(await run_queries.list_runs(session=session, limit=100))
                undelivered = (await session.scalars(select(OutboxMessage.id).where(OutboxMessage.delivered_at.is_(None)))).all()
            return len(runs) > 6 and all(r.status == "succeeded" for r in runs) and not undelivered

        await eventually(all_done, 90, "every run to succeed and every message to be delivered")
    finally:
        release.set()
        for replica in replicas:
            await replica.stop()

    async with db.sessions() as session:
        runs = list(await run_queries.list_runs(session=session, limit=100))
        attempts = list((await session.scalars(select(Attempt))).all())
        ticks = list((await session.scalars(select(Claim.key).where(Claim.key.startswith("schedule:")))).all())
        parents = list((await session.scalars(select(ChatMessage).where(ChatMessage.key == "parent"))).all())
    scheduled = [r for r in runs if r.trigger == "schedule"]
    assert len(ticks) >= 1 and len(scheduled) == len(ticks)  # every tick fired exactly once, by one replica
    assert len(runs) == 6 + len(scheduled)
    successes = Counter((a.run_id, a.step) for a in attempts if a.error_type is None)
    assert set(successes.values()) == {1} and len(successes) == 2 * len(runs)  # every step succeeded once
    assert prompts["one run3"] == 2  # the hung call died with its replica and was made again
    for prompt, count in prompts.items():
        # A call in flight on the killed replica is made once more by the survivor; no other call twice.
        assert count == 1 or (count == 2 and prompt in asked_before_kill), (prompt, count)
    top_level = Counter(c.args.get("channel") for c in fake_slack.calls_to("chat.postMessage")
                        if c.answered_ok and not c.args.get("thread_ts"))
    assert top_level == {"C0OPS": len(runs)} and len(parents) == len(runs)  # one parent message per run
    digest = await compute_digest(db, now=utcnow(), days=1)
    [minutely] = digest.workflows
    assert (minutely.workflow, minutely.started, minutely.succeeded, minutely.failed) == ("minutely", len(runs), len(runs), 0)
    assert minutely.success_rate == 1.0 and minutely.retry_exhaustions == 0
    texts = Counter(json.dumps([c.args.get("channel"), c.args.get("thread_ts"), c.args.get("text")])
                    for c in fake_slack.calls_to("chat.postMessage") if c.answered_ok and c.args.get("thread_ts"))
    assert all(n == 1 for n in texts.values()), [t for t, n in texts.items() if n > 1]  # nothing posted twice


async def test_a_second_server_on_one_sqlite_file_says_so_and_stops(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack
) -> None:
    (tmp_path / "minutely.yaml").write_text(SPEC)
    env = serve_env(f"sqlite:///{tmp_path / 'overseer.db'}", tmp_path, fake_model, fake_slack)
    first = Replica(env, tmp_path / "a.log")
    try:
        await first.start()
        await first.healthy()
        second = Replica(env, tmp_path / "b.log")
        await second.start()
        code = await asyncio.wait_for(second.proc.wait(), 60)  # type: ignore[union-attr]
        output = second.log.read_text()
        assert code == 2 and "SQLite serves from one process" in output and "Traceback" not in output
    finally:
        await first.stop()
