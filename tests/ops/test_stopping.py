"""`overseer serve` stopped while it works: SIGTERM ends it within 5 s holding no lease and no claim, and
after a restart nothing is posted twice; killed between Slack's accept and the record, it posts once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agents.engine import Engine, EngineSettings
from agents.loading import load_spec
from storage.db import Database
from storage.models import OutboxMessage, Run
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import FakeSlack
from tests.helpers.polling import eventually
from tests.helpers.prompts import answer_by_prompt
from tests.ops.test_replicas import Replica, serve_env

SPEC = """
name: held
channel: C0OPS
inputs:
  n: {type: string}
steps:
  - name: one
    model: openai/gpt-4o-mini
    prompt: "one {{ inputs.n }}"
"""


def parents(fake_slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in fake_slack.posted("C0OPS") if "thread_ts" not in m]


async def settled(db: Database) -> bool:
    """Every run succeeded and every announcement was delivered."""
    async with db.sessions() as session:
        runs = (await session.scalars(select(Run))).all()
        waiting = (await session.scalars(select(OutboxMessage.id).where(OutboxMessage.delivered_at.is_(None)))).all()
    return all(r.status == "succeeded" for r in runs) and not waiting


async def nothing_held(db: Database) -> None:
    async with db.sessions() as session:
        leases = (await session.scalars(select(Run.lease_owner).where(Run.lease_owner.is_not(None)))).all()
        claims = (await session.scalars(select(OutboxMessage.claimed_by).where(OutboxMessage.claimed_by.is_not(None)))).all()
    assert leases == [] and claims == [], (leases, claims)


async def terminate(replica: Replica) -> float:
    """SIGTERM and the seconds until the process ended (it must end by itself, with status 0)."""
    assert replica.proc is not None
    started = time.monotonic()
    replica.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(replica.proc.wait(), 30)
    took = time.monotonic() - started
    assert code == 0, replica.log.read_text()[-3000:]
    return took


def assert_posted_once(fake_slack: FakeSlack, runs: int) -> None:
    assert len(parents(fake_slack)) == runs  # one parent message per run
    replies = Counter(json.dumps([m.get("thread_ts"), m.get("text")]) for m in fake_slack.posted("C0OPS") if "thread_ts" in m)
    assert len(replies) == runs and set(replies.values()) == {1}, replies  # one finish note per run, none twice


async def test_sigterm_during_a_run_and_a_delivery_stops_within_5_s_holding_nothing_and_posts_nothing_twice(
    db: Database, db_url: str, tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack
) -> None:
    (tmp_path / "held.yaml").write_text(SPEC)
    release = threading.Event()
    # Each prompt's first call hangs until the end; made again after a restart, it answers.
    asked = answer_by_prompt(fake_model, lambda prompt, nth: Reply.hang(release) if nth == 1 else Reply.text(f"done {prompt}"))
    env = serve_env(db_url, tmp_path, fake_model, fake_slack)
    engine = Engine(db, settings=EngineSettings(owner="test"))
    spec = load_spec(tmp_path / "held.yaml")
    stops: list[float] = []
    cycles = 10 if db_url.startswith("sqlite") else 3  # each costs a start-up of serve; the SQL is the same
    try:
        for cycle in range(cycles):
            replica = await Replica(env, tmp_path / f"serve-{cycle}.log").start()
            await replica.healthy()
            await eventually(lambda: settled(db), 60, "the runs stopped last time to finish after the restart")
            held = threading.Event()
            fake_slack.accept_then_drop("chat.postMessage", hold=held)  # the new run's parent: taken, not answered
            await engine.start(spec, {"n": str(cycle)}, started_by="U0TEST", trigger="slack")
            await eventually(lambda: asked[f"one {cycle}"] == 1 and len(parents(fake_slack)) == cycle + 1, 30,
                             "the run's model call and its parent post to be in flight")
            stops.append(await terminate(replica))
            await nothing_held(db)
            held.set()
        final = await Replica(env, tmp_path / "serve-final.log").start()
        await final.healthy()
        await eventually(lambda: settled(db), 60, "every run to finish and every announcement to go out")
        stops.append(await terminate(final))
    finally:
        release.set()
    print(f"stopped in {', '.join(f'{s:.2f}' for s in stops)} s")
    assert max(stops) < 5, stops
    await nothing_held(db)
    assert_posted_once(fake_slack, cycles)
    assert all(asked[f"one {i}"] == 2 for i in range(cycles))  # each stopped call was made once more, no more


async def test_killed_between_slacks_accept_and_the_record_the_restart_finds_the_post_instead_of_posting_again(
    db: Database, db_url: str, tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack
) -> None:
    (tmp_path / "held.yaml").write_text(SPEC)
    fake_model.default = Reply.text("done")
    env = serve_env(db_url, tmp_path, fake_model, fake_slack)
    held = threading.Event()
    first = await Replica(env, tmp_path / "first.log").start()
    try:
        await first.healthy()
        fake_slack.accept_then_drop("chat.postMessage", hold=held)
        engine = Engine(db, settings=EngineSettings(owner="test"))
        await engine.start(load_spec(tmp_path / "held.yaml"), {"n": "1"}, started_by="U0TEST", trigger="slack")
        await eventually(lambda: parents(fake_slack), 30, "the parent post to be taken by Slack")
        os.kill(first.pid, signal.SIGKILL)
        await first.proc.wait()  # type: ignore[union-attr]
    finally:
        held.set()
    second = await Replica(env, tmp_path / "second.log").start()
    try:
        await second.healthy()
        # The dead process's claim lapses after twice the lease (2 x 3 s) before the message is delivered again.
        await eventually(lambda: settled(db), 60, "the run to finish and its announcements to go out")
    finally:
        await terminate(second)
    assert_posted_once(fake_slack, 1)
    assert fake_slack.calls_to("conversations.history")  # looked for, found, recorded
    async with db.sessions() as session:
        [run] = (await session.scalars(select(Run))).all()
    assert run.message_ts == parents(fake_slack)[0]["ts"]
