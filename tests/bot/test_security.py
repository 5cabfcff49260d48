"""Only Slack's signed requests change anything, and model output can never ping or fake a link."""

from __future__ import annotations

import time

import pytest

from agents import outbox
from bot.slack import blocks as bk
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.slack_requests import block_action, slash_command
from tests.helpers.slack_app import BOSS, CHANNEL, SECRET, StartBot, flow, text_of


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: slash_command("not-the-secret", text="run writer"), id="forged"),
        pytest.param(lambda: (slash_command(SECRET, text="run writer")[0], {"Content-Type": "application/x-www-form-urlencoded"}), id="unsigned"),
        pytest.param(lambda: slash_command(SECRET, text="run writer", timestamp=int(time.time()) - 6 * 60), id="stale"),
        pytest.param(lambda: (slash_command(SECRET, text="run writer")[0] + "&text=run+evil",
                              slash_command(SECRET, text="run writer")[1]), id="tampered"),
    ],
)
async def test_a_forged_unsigned_stale_or_tampered_request_gets_401_and_changes_nothing(
    start_bot: StartBot, fake_model: FakeModel, forge
) -> None:
    bot = await start_bot(flow(fake_model))
    body, headers = forge()
    response = await bot.post(body, headers)
    assert response.status_code == 401
    await bot.idle()
    assert await bot.outbox() == []
    assert bot.fake.ephemerals == [] and bot.fake.views == []
    assert fake_model.count == 0


async def test_a_forged_click_cannot_approve(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("draft"))
    bot = await start_bot(flow(fake_model))
    run = await bot.start_run()
    response = await bot.post(*block_action("guessed-secret", action_id=bk.APPROVE, value=f"{run.id}:draft", user_id=BOSS))
    assert response.status_code == 401
    await bot.idle()
    assert (await bot.run(run.id)).status == "awaiting_approval"


async def test_model_output_with_mentions_and_fake_links_is_posted_harmless(start_bot: StartBot, fake_model: FakeModel) -> None:
    evil = "Hey <!channel> and <!here>, ask <@U123> or <!subteam^S999>; log in at <https://evil.test|your bank> & relax"
    fake_model.script(Reply.text(evil))
    bot = await start_bot(flow(fake_model))
    run = await bot.start_run("run writer topic=<!everyone>")
    everything = "".join(text_of(m) for m in bot.fake.posted()) + "".join(
        str(c.args) for c in bot.fake.calls_to("chat.update")
    )
    for bad in ("<!channel>", "<!here>", "<@U123>", "<!subteam^S999>", "<https://evil.test", "<!everyone>"):
        assert bad not in everything
    [checkpoint] = bot.thread(run)
    assert "&lt;!channel&gt;" in text_of(checkpoint) and "&lt;@U123&gt;" in text_of(checkpoint) and "&amp; relax" in text_of(checkpoint)
    assert all("link_names" not in c.args and "parse" not in c.args for c in bot.fake.calls_to("chat.postMessage"))
    assert f"<@{BOSS}>" in text_of(checkpoint)  # deliberate mentions still work


async def test_a_long_output_is_cut_with_a_note_and_uploaded_in_the_thread(start_bot: StartBot, fake_model: FakeModel) -> None:
    long_output = "".join(f"line {i}: the owl & the pussycat\n" for i in range(400))  # ~12,000 characters
    fake_model.script(Reply.text(long_output))
    bot = await start_bot(flow(fake_model))
    run = await bot.start_run()
    [checkpoint] = bot.thread(run)
    assert bk.CONTINUED in text_of(checkpoint)
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in checkpoint["blocks"])
    [upload] = bot.fake.uploads
    assert upload.content.decode() == long_output.strip()
    assert (upload.channel, upload.thread_ts) == (CHANNEL, run.message_ts)

    view = await bot.open_modal(bk.EDIT, f"{run.id}:draft")
    assert "only the first 3000 fit here" in str(view["blocks"])
    assert len(view["blocks"][-1]["element"]["initial_value"]) == 3000


def test_block_builders_respect_slacks_limits_by_construction() -> None:
    from tests.fakes.fake_slack import blocks_problems, view_problems

    huge = "<@U1> & " * 5000
    text, blocks, was_cut = bk.checkpoint_message("r" * 12, "s" * 200, huge, ["U0BOSS"])
    assert was_cut and blocks_problems(blocks, 50) == []
    report = outbox.StepFailed.from_payload({
        "step": "s", "step_kind": "model", "error_type": "TransientError", "retried": True, "error": huge,
        "input": {"prompt": huge}, "last_raw_output": huge,
        "attempts": [{"number": i, "model": None, "at": "2026-01-01T00:00:00+00:00", "error": huge, "backoff_s": 1.0}
                     for i in range(200)],
    })
    _, blocks, cut = bk.failure_report("run", report, ["U0A", "S0B"])
    assert blocks_problems(blocks, 50) == [] and cut == {"input": True, "raw": True}
    assert "<@U1>" not in str(blocks)

    class Step:
        def __init__(self, i: int) -> None:
            self.step, self.status, self.attempts, self.started_at, self.finished_at, self.cost_usd = f"step{i}" * 20, "succeeded", 1, None, None, 0.0

    class Run:
        id, workflow, status, started_by, trigger, cost_usd, started_at, finished_at = "r1", "w" * 300, "running", "U0A", "slack", 0.1, None, None
        inputs, spec, error = {"topic": huge}, {"approvers": ["U0B"]}, None

    _, blocks = bk.parent_message(Run(), [Step(i) for i in range(300)], {})
    assert blocks_problems(blocks, 50) == []
    assert view_problems(bk.edit_modal("r", "s", huge, "C1", "text")) == []
    assert view_problems(bk.retry_modal("r", "s", "model", {"prompt": huge, "system": huge}, "C1")) == []
    assert bk.cut_escaped(bk.escape_mrkdwn("a" * 9 + "&"), 12) in ("aaaaaaaaa…", "aaaaaaaaa&amp;")
