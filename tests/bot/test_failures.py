"""Failures are reported in the run's thread with what a person needs to fix them, and the fix is a click away."""

from __future__ import annotations

import json

from agents import outbox
from bot.slack import blocks as bk
from storage import run_queries
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import BLOCKS_TEXT, blocks_text
from tests.helpers.polling import eventually
from tests.helpers.slack_app import ALICE, BOSS, CHANNEL, StartBot, buttons, flow, stop_bot, text_of


def failing_flow(fake_model: FakeModel, **extra: object):
    return flow(fake_model, steps=[
        {"name": "summarize", "model": "openai/gpt-4o-mini", "system": "Be brief.",
         "prompt": "Summarize {{ inputs.topic }}", "retry": {"attempts": 2, "initial_delay": 1}},
    ], **extra)


async def test_a_failing_step_gets_a_thread_report_with_its_input_and_retry_step_succeeds(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.status(500), Reply.status(503))
    bot = await start_bot(failing_flow(fake_model))
    run = await bot.start_run("run writer topic=owls")
    assert run.status == "failed"

    [report] = [m for m in bot.thread(run) if "failed" in text_of(m)]
    body = text_of(report)
    assert "summarize" in body and "Summarize owls" in body and "Be brief." in body  # the step's input
    assert "#1" in body and "#2" in body and "then waited" in body  # every attempt, and the delay that followed
    assert body.count(f"<@{ALICE}>") == 2 and body.count(f"<@{BOSS}>") == 2  # once in the text, once in the blocks
    assert buttons(report) == {bk.RETRY: f"{run.id}:summarize", bk.RETRY_EDITED: f"{run.id}:summarize", bk.ABORT: f"{run.id}:summarize"}
    parent = text_of(bot.parent(run))
    assert "✗ *summarize*" in parent and "see the report in the thread" in parent

    fake_model.script(Reply.text("Owls are birds."))
    await bot.click(bk.RETRY, f"{run.id}:summarize", user=ALICE)  # the starter may retry
    await bot.idle()
    run = await bot.run(run.id)
    assert run.status == "succeeded"
    report = bot.fake.message(CHANNEL, report["ts"])
    assert buttons(report) == {} and f"<@{ALICE}> retried step" in text_of(report)
    assert "✓ succeeded" in text_of(bot.parent(run))
    assert any("retried step" in text_of(m) for m in bot.thread(run) if m["ts"] != report["ts"])


async def test_retry_with_edited_input_runs_the_step_with_the_new_prompt(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.refusal())  # permanent: not retried
    bot = await start_bot(failing_flow(fake_model))
    run = await bot.start_run("run writer topic=owls")
    assert run.status == "failed" and fake_model.count == 1

    view = await bot.open_modal(bk.RETRY_EDITED, f"{run.id}:summarize")
    fields = {b["block_id"]: b["element"].get("initial_value") for b in view["blocks"] if b["type"] == "input"}
    assert fields == {"system": "Be brief.", "prompt": "Summarize owls"}

    fake_model.script(Reply.text("Owls hoot."))
    await bot.submit(bk.RETRY_MODAL, view, {"system": {"value": "Be kind."}, "prompt": {"value": "Summarize barn owls"}})
    await bot.idle()
    assert (await bot.run(run.id)).status == "succeeded"
    messages = fake_model.requests[-1].body["messages"]
    assert messages[0]["content"].startswith("Be kind.") and messages[-1]["content"] == "Summarize barn owls"
    assert any("with edited input" in text_of(m) for m in bot.thread(run))


async def test_abort_cancels_a_failed_run(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.refusal())
    bot = await start_bot(failing_flow(fake_model))
    run = await bot.start_run()
    await bot.click(bk.ABORT, f"{run.id}:summarize", user="U0MALLORY")  # neither starter nor approver
    await bot.fake.wait_for_async(lambda f: any(e["user"] == "U0MALLORY" for e in f.ephemerals))
    await bot.click(bk.ABORT, f"{run.id}:summarize", user=BOSS)
    await bot.idle()
    run = await bot.run(run.id)
    assert run.status == "cancelled"
    assert "cancelled" in text_of(bot.parent(run))


async def test_slack_down_during_a_failure_report_it_is_delivered_exactly_once_when_back_even_after_a_restart(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.slow(0.3, Reply.refusal()))
    spec = failing_flow(fake_model)
    first = await start_bot(spec)
    fake = first.fake
    await first.command("run writer")
    await fake.wait_for_async(lambda f: f.posted(CHANNEL), what="parent posted")
    fake.down()  # Slack goes away while the step is failing
    await first.services.runner.wait_idle()
    run = await first.only_run()
    assert run.status == "failed"
    # the failure report waits in the outbox, tried and scheduled again, not lost
    async def retried() -> list | None:
        pending = [m for m in await first.outbox(run.id) if m.delivered_at is None]
        return pending if pending and pending[0].tries >= 2 else None

    pending = await eventually(retried, 30, "the failure report to be tried twice", interval=0.02)
    assert "step_failed" in [m.kind for m in pending]  # waiting behind the stream's head, in order
    assert "Connect" in (pending[0].last_error or "") and pending[0].next_try_at is not None
    await stop_bot(first)  # a restart, with Slack still down

    fake.up()
    second = await start_bot(spec)
    await second.idle()
    run = await second.run(run.id)
    reports = [m for m in fake.posted(CHANNEL, thread_ts=run.message_ts) if "failed" in text_of(m) and bk.RETRY in buttons(m)]
    assert len(reports) == 1
    assert len([m for m in fake.posted(CHANNEL) if "thread_ts" not in m]) == 1  # one parent
    assert all(m.delivered_at is not None for m in await second.outbox(run.id))
    assert "failed" in text_of(second.parent(run))


async def test_invalid_blocks_fall_back_to_plain_text_and_are_not_retried_forever(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.refusal())
    bot = await start_bot(failing_flow(fake_model))
    await bot.command("run writer")
    await bot.fake.wait_for_async(lambda f: f.posted(CHANNEL), what="parent posted")
    bot.fake.error_next("chat.postMessage", "invalid_blocks", n=1)  # the failure report's blocks are refused
    await bot.idle()
    run = await bot.only_run()
    [report] = [m for m in bot.thread(run) if "failed" in text_of(m)]
    assert bk.RETRY in buttons(report)  # the fallback keeps the buttons, with short text
    failed = [m for m in await bot.outbox(run.id) if m.kind == "step_failed"]
    assert failed[0].delivered_at is not None and "invalid_blocks" in failed[0].last_error
    posts = [c for c in bot.fake.calls_to("chat.postMessage") if c.args.get("thread_ts")]
    assert len(posts) == 2  # the refused one and its fallback: nothing more

    # refused even as plain text: recorded and given up, never retried forever
    fake_model.script(Reply.refusal())
    await bot.command("run writer")
    await bot.fake.wait_for_async(lambda f: len([m for m in f.posted(CHANNEL) if "thread_ts" not in m]) == 2)
    bot.fake.error_next("chat.postMessage", "msg_too_long", n=2)
    await bot.idle()
    gave_up = [m for m in await bot.outbox() if m.kind == "step_failed" and m.run_id != run.id]
    assert gave_up[0].delivered_at is not None and "msg_too_long" in gave_up[0].last_error and gave_up[0].tries == 1


async def test_a_long_input_is_cut_with_a_note_and_attached_as_a_file(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.refusal())
    bot = await start_bot(failing_flow(fake_model))
    long_topic = "owls " * 1500
    run = await bot.start_run(f'run writer topic="{long_topic}"')
    [report] = [m for m in bot.thread(run) if "failed" in text_of(m)]
    assert bk.CONTINUED in text_of(report)
    [upload] = bot.fake.uploads
    assert upload.channel == CHANNEL and upload.thread_ts == run.message_ts
    assert json.loads(upload.content) == {"system": "Be brief.", "prompt": f"Summarize {long_topic}"}  # the full input


def thirty_attempts(step: str = "summarize") -> outbox.StepFailed:
    """A failure report of 30 attempts, each with a long error: more than Slack takes in one message, as is."""
    error = "upstream said: " + "the owl & the pussycat went to sea <in a beautiful pea-green boat> " * 20
    return outbox.StepFailed.from_payload({
        "step": step, "step_kind": "model", "error_type": "TransientError", "retried": True, "error": error,
        "input": {"system": "Be brief.", "prompt": "Summarize " + "owls " * 600}, "last_raw_output": "raw " * 800,
        "attempts": [{"number": i, "model": "openai/gpt-4o-mini", "at": "2026-01-01T00:00:00+00:00", "error_type": "TransientError",
                      "error": error, "backoff_s": 1.5} for i in range(1, 31)],
    })


def test_a_report_of_30_attempts_is_built_within_slacks_total_for_a_message() -> None:
    text, blocks, _ = bk.failure_report("r" * 12, thirty_attempts(), ["U0ALICE", "U0BOSS"])
    assert blocks_text(blocks) <= bk.BLOCKS_TEXT_BUDGET < BLOCKS_TEXT
    body = json.dumps(blocks)
    assert "*Attempts (30)*" in body and "#1 " in body and "#30 " in body and "more attempts not shown" in body
    assert bk.RETRY in body and "*Input*" in body  # the buttons and the input are never what gives way


async def test_a_failure_report_of_30_attempts_with_long_errors_reaches_slack(start_bot: StartBot, fake_model: FakeModel) -> None:
    """Slack refuses blocks over ~12,000 characters in all (`msg_blocks_too_long`): such a report was dropped."""
    fake_model.script(Reply.refusal())
    bot = await start_bot(failing_flow(fake_model))
    run = await bot.start_run()
    async with bot.db.sessions.begin() as session:
        await outbox.announce(session, run.id, thirty_attempts())
    bot.services.dispatcher.kick()
    await bot.idle()
    reports = [m for m in bot.thread(run) if "failed" in text_of(m) and bk.RETRY in buttons(m)]
    assert len(reports) == 2 and "*Attempts (30)*" in text_of(reports[-1])
    assert all(c.error != "msg_blocks_too_long" for c in bot.fake.calls_to("chat.postMessage"))
    assert all(m.delivered_at is not None and not m.last_error for m in await bot.outbox(run.id))


async def test_a_message_slack_finds_too_long_in_all_goes_out_as_plain_text_and_a_file(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.refusal())
    bot = await start_bot(failing_flow(fake_model))
    await bot.command("run writer")
    await bot.fake.wait_for_async(lambda f: f.posted(CHANNEL), what="parent posted")
    bot.fake.error_next("chat.postMessage", "msg_blocks_too_long")  # however Slack counts, it may still say no
    await bot.idle()
    run = await bot.only_run()
    [report] = [m for m in bot.thread(run) if "failed" in text_of(m)]
    assert bk.RETRY in buttons(report) and "attached file" in text_of(report)
    [failed] = [m for m in await bot.outbox(run.id) if m.kind == "step_failed"]
    assert failed.delivered_at is not None and "msg_blocks_too_long: sent a plain-text version" in failed.last_error
    [upload] = bot.fake.uploads
    assert json.loads(upload.content)["prompt"].startswith("Summarize")


async def test_only_approvers_may_retry_with_edited_input(start_bot: StartBot, fake_model: FakeModel) -> None:
    """Editing the input replaces the step's prompt or tool arguments: the starter may retry, not rewrite."""
    fake_model.script(Reply.refusal())
    bot = await start_bot(failing_flow(fake_model))
    run = await bot.start_run()
    await bot.click(bk.RETRY_EDITED, f"{run.id}:summarize", user=ALICE)  # the starter, not an approver
    await bot.idle()
    assert bot.fake.views == [] and "Not allowed" in bot.ephemerals_for(ALICE)[-1]

    view = await bot.open_modal(bk.RETRY_EDITED, f"{run.id}:summarize", user=BOSS)
    response = await bot.submit(bk.RETRY_MODAL, view, {"system": {"value": ""}, "prompt": {"value": "ignore all that"}}, user=ALICE)
    assert response.json() == {"response_action": "errors",
                               "errors": {"prompt": "only the workflow's approvers may retry with edited input"}}
    await bot.idle()
    assert (await bot.run(run.id)).status == "failed" and fake_model.count == 1
    async with bot.db.sessions() as session:
        refused = [e.detail["action"] for e in await run_queries.events(session=session, kind="action_refused")]
    assert refused == ["retry_edited", "retry_edited"]

    fake_model.script(Reply.text("Owls hoot."))
    await bot.click(bk.RETRY, f"{run.id}:summarize", user=ALICE)  # the plain Retry stays the starter's
    await bot.idle()
    assert (await bot.run(run.id)).status == "succeeded"
