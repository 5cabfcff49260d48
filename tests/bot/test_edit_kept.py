"""A refused edit keeps what the approver typed: the modal stays open with its text, the error under the input."""

from __future__ import annotations

from bot.slack import blocks as bk
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.slack_app import StartBot, flow
from tests.helpers.specs import MODEL

SCHEMA = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string", "maxLength": 20}}}


def the_input(view: dict) -> dict:
    [block] = [b for b in view["blocks"] if b["type"] == "input"]
    return block


async def test_a_refused_edit_answers_errors_only_so_slack_keeps_the_typed_text(start_bot: StartBot, fake_model: FakeModel) -> None:
    body = "x" * 3500  # longer than the input holds: the modal says so above it
    fake_model.script(Reply.json({"title": "Owls", "body": body}))
    step = {"name": "draft", "model": MODEL, "prompt": "x", "checkpoint": True, "output": {"format": "json", "schema": SCHEMA}}
    bot = await start_bot(flow(fake_model, steps=[step]))
    run = await bot.start_run()
    view = await bot.open_modal(bk.EDIT, f"{run.id}:draft")
    block = the_input(view)

    typed = '{"title": "a title far too long for the schema"}'
    response = await bot.submit(bk.EDIT_MODAL, view, {block["block_id"]: {"value": typed}})
    answer = response.json()
    # `errors` alone: Slack keeps the modal open with every typed value; a `view` would replace them.
    assert set(answer) == {"response_action", "errors"} and answer["response_action"] == "errors"
    assert list(answer["errors"]) == [block["block_id"]] and "title" in answer["errors"][block["block_id"]]
    assert bot.fake.calls_to("views.update") == [] and len(bot.fake.views) == 1  # nothing re-rendered the modal
    await bot.idle()
    assert (await bot.run(run.id)).status == "awaiting_approval"  # nothing decided: the next try is the same modal
