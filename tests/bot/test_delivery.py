"""The outbox dispatcher: in order, exactly once across replicas, patient with Slack, never stuck."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time

import pytest

from agents import outbox
from bot.slack.app import build_client
from bot.slack.dispatcher import Dispatcher
from storage.db import Database
from storage.models import OutboxMessage, utcnow
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import FakeSlack
from tests.helpers.polling import eventually
from tests.helpers.runs import all_runs, outbox_of
from tests.helpers.slack_app import CHANNEL, TOKEN, StartBot, dispatcher_settings, flow, stop_bot, text_of


async def announce(db: Database, run_id: str | None, announcement: outbox.Announcement, stream: str | None = None) -> None:
    async with db.sessions.begin() as session:
        await outbox.announce(session, run_id, announcement, stream=stream)


def dispatcher(db: Database, fake_slack: FakeSlack) -> Dispatcher:
    return Dispatcher(db, build_client(TOKEN, base_url=fake_slack.api_url), settings=dispatcher_settings())


async def test_two_replicas_never_post_the_same_message_twice(db: Database, fake_slack: FakeSlack) -> None:
    for i in range(6):
        await announce(db, None, outbox.CheckpointReminder(step="x", mention=["U0A"], waiting_s=0), stream=f"s{i}")  # no run: nothing to post
    client = build_client(TOKEN, base_url=fake_slack.api_url, retry_interval=0.01)
    replicas = [Dispatcher(db, client, settings=dispatcher_settings(owner=f"replica-{i}")) for i in range(3)]
    claimed = await asyncio.gather(*(r.tick() for r in replicas))
    assert sum(claimed) == 6  # each message claimed by exactly one replica
    rows = await outbox_of(db)
    assert all(r.delivered_at is not None and r.tries == 1 for r in rows)


async def test_messages_of_one_run_go_out_in_order_and_parent_updates_are_coalesced(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("a"), Reply.text("b"), Reply.text("c"))
    spec = flow(fake_model, steps=[{"name": n, "model": "openai/gpt-4o-mini", "prompt": "x"} for n in ("one", "two", "three")])
    bot = await start_bot(spec, dispatcher=dispatcher_settings(poll_seconds=5.0))  # nothing goes out until kicked
    await bot.command("run writer")
    await bot.services.context.settle()
    await bot.services.runner.wait_idle()
    kinds = [m.kind for m in await bot.outbox()]
    assert kinds.count("step_started") == 3 and kinds[-1] == "run_finished"
    bot.services.dispatcher.kick()
    await bot.idle()
    run = await bot.only_run()
    assert run.status == "succeeded"
    updates = bot.fake.calls_to("chat.update")
    assert len(updates) < kinds.count("step_started") + kinds.count("step_succeeded")  # coalesced
    assert "✓ succeeded" in text_of(bot.parent(run))
    assert [m["thread_ts"] for m in bot.fake.posted(CHANNEL) if "thread_ts" in m] == [run.message_ts]  # the finish note


async def test_a_429_is_waited_out_as_retry_after_says(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("ok"))
    bot = await start_bot(flow(fake_model, steps=[{"name": "only", "model": "openai/gpt-4o-mini", "prompt": "x"}]))
    await bot.command("list")
    await bot.idle()
    bot.fake.rate_limit_next(1, retry_after=1)
    started = time.monotonic()
    run = await bot.start_run()
    assert run.message_ts and len([m for m in bot.fake.posted(CHANNEL) if "thread_ts" not in m]) == 1
    limited = [c for c in bot.fake.calls if c.status == 429]
    retried = [c for c in bot.fake.calls if c.method == limited[0].method and c.at > limited[0].at]
    assert retried[0].answered_ok and retried[0].at - limited[0].at >= 1.0  # Retry-After honoured, then it went through
    assert time.monotonic() - started < 10


async def test_unknown_kinds_are_marked_delivered_with_a_note(db: Database, fake_slack: FakeSlack) -> None:
    async with db.sessions.begin() as session:
        # Written by hand: agents.outbox refuses to write a kind it does not know.
        session.add(OutboxMessage(run_id=None, stream="future", kind="from_the_future", payload={}, created_at=utcnow()))
    await dispatcher(db, fake_slack).drain()
    [row] = await outbox_of(db)
    assert row.delivered_at is not None and "unknown kind" in row.last_error
    assert fake_slack.calls == []


@pytest.mark.skipif(importlib.util.find_spec("bot.digest") is None or importlib.util.find_spec("agents.digest") is None,
                    reason="the digest modules are written by another helper")
async def test_a_digest_announcement_is_posted_to_its_channel(db: Database, fake_slack: FakeSlack) -> None:
    from agents.digest import compute_digest

    digest = await compute_digest(db, now=utcnow(), days=1, workflows=["writer"])
    await announce(db, None, outbox.DigestReady(channel="C0DIGEST", report=digest.to_payload()), stream="digest")
    dispatching = dispatcher(db, fake_slack)
    await dispatching.drain()
    [posted] = fake_slack.posted("C0DIGEST")
    assert "writer" in text_of(posted)
    await dispatching.drain()
    assert len(fake_slack.posted("C0DIGEST")) == 1


async def test_reminders_and_escalations_mention_the_people_in_the_thread(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("draft"))
    bot = await start_bot(flow(fake_model))
    run = await bot.start_run()
    await announce(bot.db, run.id, outbox.CheckpointReminder(step="draft", mention=["U0BOSS"], waiting_s=0))
    await announce(bot.db, run.id, outbox.CheckpointEscalated(
        step="draft", mention=["S0LEADS"], approvers=["U0BOSS"], on_timeout="reject", waiting_s=0,
    ))
    bot.services.dispatcher.kick()
    await bot.idle()
    notes = [text_of(m) for m in bot.thread(run)][1:]
    assert "Reminder" in notes[0] and "<@U0BOSS>" in notes[0]
    assert "<!subteam^S0LEADS>" in notes[1] and "reject" in notes[1]


def top_level(fake: FakeSlack) -> list[dict]:
    return [m for m in fake.posted(CHANNEL) if "thread_ts" not in m]


async def test_every_post_carries_its_outbox_row_and_key_in_its_metadata(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("hi"))
    bot = await start_bot(flow(fake_model, steps=[{"name": "only", "model": "openai/gpt-4o-mini", "prompt": "x"}]))
    run = await bot.start_run()
    [parent] = top_level(bot.fake)
    [note] = bot.thread(run)
    rows = {m.kind: m.id for m in await bot.outbox(run.id)}
    assert parent["metadata"] == {"event_type": "overseer_post",
                                  "event_payload": {"outbox_id": rows["run_started"], "key": "parent", "run_id": run.id}}
    assert note["metadata"]["event_payload"] == {"outbox_id": rows["run_finished"], "key": f"note:{rows['run_finished']}",
                                                 "run_id": run.id}
    assert not bot.fake.calls_to("conversations.history")  # nothing to look for on a first delivery


async def test_posts_slack_took_but_never_answered_are_found_by_their_metadata_not_posted_again(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    """The parent and the finish note are carried out, then the connection drops before the answer (as
    for a process killed between Slack's accept and the record): each is found, recorded, posted once."""
    fake_model.script(Reply.text("hi"))
    bot = await start_bot(flow(fake_model, steps=[{"name": "only", "model": "openai/gpt-4o-mini", "prompt": "x"}]))
    bot.fake.accept_then_drop("chat.postMessage", n=2)
    run = await bot.start_run()
    assert run.status == "succeeded" and run.message_ts
    [parent] = top_level(bot.fake)
    [note] = bot.thread(run)
    assert parent["ts"] == run.message_ts and "succeeded" in text_of(note)
    assert len([c for c in bot.fake.calls_to("chat.postMessage") if c.answered_ok]) == 2  # no blind retry by slack_sdk
    assert bot.fake.calls_to("conversations.history") and bot.fake.calls_to("conversations.replies")
    assert all(c.args.get("include_all_metadata") in (True, "true", "1") for c in bot.fake.calls_to("conversations.history"))
    assert all(m.delivered_at is not None for m in await bot.outbox(run.id))


async def test_a_stop_while_slack_holds_a_post_does_not_post_it_again_after_the_restart(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    """A graceful stop cancels the delivery under way; its claim is given back marked, so the next
    delivery looks for the post first."""
    fake_model.script(Reply.text("hi"))
    spec = flow(fake_model, steps=[{"name": "only", "model": "openai/gpt-4o-mini", "prompt": "x"}])
    first = await start_bot(spec)
    held = threading.Event()
    first.fake.accept_then_drop("chat.postMessage", hold=held)
    await first.command("run writer")
    await first.fake.wait_for_async(lambda f: f.posted(CHANNEL), what="the parent accepted, its answer held")
    started = time.monotonic()
    await stop_bot(first)
    assert time.monotonic() - started < 5
    rows = await first.outbox()
    assert all(m.claimed_by is None for m in rows) and all(r.lease_owner is None for r in await all_runs(first))
    held.set()

    second = await start_bot(spec)
    await second.idle()
    run = await second.only_run()
    assert run.status == "succeeded"
    assert len(top_level(second.fake)) == 1 and run.message_ts == top_level(second.fake)[0]["ts"]
    assert len(second.thread(run)) == 1


async def test_after_a_slack_outage_everything_waiting_goes_out_soon_confirmations_included(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    """Production backoff (1 s doubling up to 300 s): without the probe, messages tried a few times during
    the outage would wait tens of seconds more once Slack is back; "Started run …" replies were lost."""
    fake_model.default = Reply.text("hi")
    spec = flow(fake_model, steps=[{"name": "only", "model": "openai/gpt-4o-mini", "prompt": "x"}])
    bot = await start_bot(spec, dispatcher=dispatcher_settings(backoff_base=1.0, backoff_max=300.0))
    await bot.command("help")  # Bolt checks the token (auth.test) once, at the first request
    await bot.idle()
    bot.fake.down()
    users = [f"U0USER{i}" for i in range(6)]
    for user in users:
        assert (await bot.command("run writer", user=user)).status_code == 200
    await bot.services.context.settle()
    await bot.services.runner.wait_idle()

    async def tried_a_few_times() -> bool:
        heads = [m for m in await bot.outbox() if m.kind in ("run_started", "start_confirmed")]
        return min(m.tries for m in heads) >= 5  # the next try of each is 8-16 s away

    await eventually(tried_a_few_times, 40, "every waiting message to be tried five times", interval=0.2)
    bot.fake.up()
    back = time.monotonic()

    async def drained() -> bool:
        return all(m.delivered_at is not None for m in await bot.outbox())

    await eventually(drained, 30, "the backlog to drain once Slack is back", interval=0.1)
    took = time.monotonic() - back
    assert took < 6, took  # the probe notices within 2 s; the backlog then goes at once (30 s is the promise)
    runs = await all_runs(bot)
    assert len(runs) == len(users) and all(r.status == "succeeded" and r.message_ts for r in runs)
    assert len(top_level(bot.fake)) == len(users)
    for user in users:
        assert [t for t in bot.ephemerals_for(user) if "Started run" in t], user  # every confirmation delivered


async def test_posts_in_one_channel_keep_to_its_pace_and_a_finished_run_is_drawn_once(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    """Eight runs in one channel at once: after the burst, a post every interval, never faster; the parent
    of a run whose messages were all written before delivery is posted and updated without the steps' redraws."""
    fake_model.default = Reply.text("hi")
    spec = flow(fake_model, steps=[{"name": n, "model": "openai/gpt-4o-mini", "prompt": "x"} for n in ("a", "b", "c")])
    bot = await start_bot(spec, dispatcher=dispatcher_settings(channel_interval=0.25, channel_burst=2))
    await bot.services.dispatcher.stop()  # deliver by hand (drain), once everything is written
    runs = [await bot.services.engine.start(spec, {}, started_by="U0ALICE") for _ in range(8)]
    await bot.services.runner.wait_idle()
    await bot.services.dispatcher.drain(timeout=30)
    posts = sorted(c.at for c in bot.fake.calls_to("chat.postMessage") if c.args.get("channel") == CHANNEL)
    assert len(posts) >= len(runs)
    for i in range(2, len(posts)):  # any three posts span at least one interval (burst 2)
        assert posts[i] - posts[i - 2] >= 0.25 - 0.02, (i, posts[i] - posts[i - 2])
    # Per run: the parent posted, then updated once for its finish (not once per step message).
    assert len(bot.fake.calls_to("chat.update")) == len(runs)
