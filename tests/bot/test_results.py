"""A finished run's result where people look: the thread's last message shows it, readable, long parts as files;
`/overseer status RUN` shows each step's output."""

from __future__ import annotations

import json

from bot.slack import result_blocks as rb
from bot.slack.limits import FIELD_TEXT, SECTION_TEXT
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.slack_app import StartBot, flow, text_of
from tests.helpers.specs import MODEL

AUDIT = {"name": "seo-audit", "model": MODEL, "prompt": "audit", "output": {"format": "json"}}


async def test_the_last_steps_json_output_is_posted_as_fields_with_the_finish_line(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("a draft"), Reply.json({"score": 71, "problems": ["no <h1>", "slow"], "verdict": "fix it"}))
    bot = await start_bot(flow(fake_model, steps=[{"name": "draft", "model": MODEL, "prompt": "x"}, AUDIT]))
    run = await bot.start_run()
    await bot.idle()
    [last] = bot.thread(run)  # one message: how it ended, and what it produced
    assert "Run ✓ succeeded" in text_of(last)
    fields = [f["text"] for b in last["blocks"] if b.get("fields") for f in b["fields"]]
    assert fields == ["*score*\n71", '*problems*\n`["no &lt;h1&gt;", "slow"]`', "*verdict*\nfix it"]
    assert "a draft" not in text_of(last)  # only the last step is the result by default
    assert bot.fake.uploads == []


async def test_published_steps_make_the_result_and_long_text_goes_out_as_a_file(start_bot: StartBot, fake_model: FakeModel) -> None:
    essay = "Owls hunt at night. " * 400  # 8,000 characters: more than a section holds
    fake_model.script(Reply.text(essay), Reply.text("internal notes"))
    steps = [{"name": "essay", "model": MODEL, "prompt": "x", "publish": True}, {"name": "notes", "model": MODEL, "prompt": "y"}]
    bot = await start_bot(flow(fake_model, steps=steps))
    run = await bot.start_run()
    await bot.idle()
    [last] = bot.thread(run)
    assert "Owls hunt at night." in text_of(last) and "internal notes" not in text_of(last)
    assert "continued in the attached file" in text_of(last)
    assert all(len(b["text"]["text"]) <= SECTION_TEXT for b in last["blocks"] if b.get("text"))
    [upload] = bot.fake.uploads
    assert upload.content.decode() == essay.strip() and upload.thread_ts == run.message_ts
    assert upload.filename == f"{run.id}-essay-result.txt"


async def test_status_of_a_run_shows_each_steps_output(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("first output"), Reply.json({"verdict": "fine"}))
    bot = await start_bot(flow(fake_model, steps=[{"name": "draft", "model": MODEL, "prompt": "x"}, AUDIT]))
    run = await bot.start_run()
    await bot.idle()
    await bot.command(f"status {run.id}")
    await bot.idle()
    answer = bot.fake.ephemerals[-1]
    shown = text_of(answer)
    assert "output of `draft`" in shown and "first output" in shown and "verdict" in shown


def test_a_field_too_long_is_cut_and_the_whole_output_named_for_a_file() -> None:
    value = {"body": "x" * 5000, "title": "T"}
    text, blocks, files = rb.result_message("r1", "Run ✓ succeeded", {"draft": value}, {"draft": "json"})
    fields = [f["text"] for b in blocks if b.get("fields") for f in b["fields"]]
    assert all(len(f) <= FIELD_TEXT for f in fields) and fields[1] == "*title*\nT"
    [file] = files
    assert file.filename == "r1-draft-result.json" and '"body"' in file.content and "x" * 5000 in file.content


def test_many_outputs_stay_within_one_messages_budget() -> None:
    outputs = {f"s{i}": "y" * 2500 for i in range(8)}
    _, blocks, files = rb.result_message("r1", "Run ✓ succeeded", outputs, {})
    assert rb.text_length(blocks) <= 10_000 and len(files) >= 4


async def test_status_links_to_the_runs_page_below_the_outputs_when_a_public_url_is_set(
        start_bot: StartBot, fake_model: FakeModel) -> None:
    from bot.settings import Settings
    from tests.bot.pages.conftest import KEY

    fake_model.default = Reply.text("Owls.")
    bot = await start_bot(flow(fake_model, steps=[{"name": "draft", "model": MODEL, "prompt": "x"}]),
                          settings=Settings(secret_key=KEY, public_url="https://overseer.example.com"))
    run = await bot.start_run()
    await bot.idle()
    await bot.command(f"status {run.id}")
    await bot.idle()
    blocks = bot.fake.ephemerals[-1]["blocks"]
    assert "Owls." in json.dumps(blocks[-2]) and f"https://overseer.example.com/runs/{run.id}?exp=" in json.dumps(blocks[-1])


async def test_a_result_slack_refuses_goes_out_short_with_every_output_as_a_file(start_bot: StartBot, fake_model: FakeModel) -> None:
    from bot.slack import blocks as bk
    from tests.helpers.slack_app import BOSS

    fake_model.script(Reply.json({"title": "Owls", "body": "They hunt at night."}))
    step = {"name": "draft", "model": MODEL, "prompt": "x", "checkpoint": True, "output": {"format": "json"}}
    bot = await start_bot(flow(fake_model, steps=[step]))
    run = await bot.start_run()
    await bot.idle()
    bot.fake.error_next("chat.postMessage", "invalid_blocks", n=1)  # the next post is the result's
    await bot.click(bk.APPROVE, f"{run.id}:draft", user=BOSS)
    await bot.idle()
    last = bot.thread(run)[-1]
    assert "Run ✓ succeeded" in text_of(last) and "The result is in the attached file" in text_of(last)
    [upload] = bot.fake.uploads
    assert upload.filename == f"{run.id}-draft-result.json" and '"title": "Owls"' in upload.content.decode()
    [finished] = [m for m in await bot.outbox(run.id) if m.kind == "run_finished"]
    assert finished.delivered_at is not None and "invalid_blocks" in finished.last_error
