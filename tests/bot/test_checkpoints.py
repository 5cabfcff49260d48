"""End to end through Slack: a command starts a run, the parent moves, a checkpoint is decided with buttons."""

from __future__ import annotations

import asyncio
import json

from bot.slack import blocks as bk
from storage import run_queries
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.slack_app import ALICE, BOSS, CHANNEL, StartBot, buttons, flow, stop_bot, text_of


def two_steps(fake_model: FakeModel, **extra: object):
    return flow(fake_model, steps=[
        {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "Write about {{ inputs.topic }}", "checkpoint": True,
         "output": {"format": "json", "schema": {"type": "object", "required": ["title"],
                                                 "properties": {"title": {"type": "string", "maxLength": 20}}}}},
        {"name": "polish", "model": "openai/gpt-4o-mini", "prompt": "Polish {{ steps.draft.output.title }}"},
    ], **extra)


async def test_command_runs_steps_stops_at_the_checkpoint_and_approve_finishes_the_run(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls at night"}), Reply.text("Owls, polished"))
    bot = await start_bot(two_steps(fake_model))

    response = await bot.command('run writer topic="night owls"')
    assert response.status_code == 200
    await bot.idle()
    run = await bot.only_run()
    assert run.status == "awaiting_approval" and run.started_by == ALICE and run.inputs == {"topic": "night owls"}
    assert "Started run" in bot.ephemerals_for(ALICE)[-1]

    parent = bot.parent(run)
    assert f"<@{ALICE}>" in text_of(parent)  # who started it
    assert f"waiting for <@{BOSS}>" in text_of(parent)  # whom it waits for
    [checkpoint] = bot.thread(run)
    assert "Owls at night" in text_of(checkpoint)
    # every button carries the version it was shown with
    assert buttons(checkpoint) == {b: f"{run.id}:draft:1" for b in (bk.APPROVE, bk.EDIT, bk.REVISE, bk.REJECT)}

    response = await bot.click(bk.APPROVE, f"{run.id}:draft", user=BOSS)
    assert response.status_code == 200
    await bot.idle()
    run = await bot.run(run.id)
    assert run.status == "succeeded"
    assert fake_model.requests[-1].body["messages"][-1]["content"] == "Polish Owls at night"

    checkpoint = bot.fake.message(CHANNEL, checkpoint["ts"])
    assert buttons(checkpoint) == {}  # nobody clicks twice
    assert f"Approved by <@{BOSS}>" in text_of(checkpoint)
    parent = bot.parent(run)
    assert "✓ succeeded" in text_of(parent) and "✓ *draft*" in text_of(parent) and "✓ *polish*" in text_of(parent)
    assert "1 attempt" in text_of(parent) and "$" in text_of(parent)
    assert "succeeded" in text_of(bot.thread(run)[-1])
    # one parent message, updated in place; everything else in its thread
    assert [m["ts"] for m in bot.fake.posted(CHANNEL) if "thread_ts" not in m] == [run.message_ts]


async def test_a_valid_edit_replaces_the_output_and_says_how_much_changed(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("done"))
    bot = await start_bot(two_steps(fake_model))
    run = await bot.start_run()

    view = await bot.open_modal(bk.EDIT, f"{run.id}:draft")
    assert view["callback_id"] == bk.EDIT_MODAL
    assert json.loads(view["blocks"][-1]["element"]["initial_value"]) == {"title": "Owls"}  # prefilled, pretty JSON

    response = await bot.submit(bk.EDIT_MODAL, view, {"output": {"value": '{"title": "Barn owls"}'}})
    assert response.status_code == 200 and response.text in ("", "null")  # the modal closes
    await bot.idle()
    run = await bot.run(run.id)
    assert run.status == "succeeded"
    assert fake_model.requests[-1].body["messages"][-1]["content"] == "Polish Barn owls"
    [checkpoint, *_] = bot.thread(run)
    assert f"Edited and approved by <@{BOSS}>" in text_of(checkpoint)
    assert "characters changed" in text_of(checkpoint) and buttons(checkpoint) == {}


async def test_an_edit_that_breaks_the_contract_is_refused_inline_and_nothing_changes(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}))
    bot = await start_bot(two_steps(fake_model))
    run = await bot.start_run()
    view = await bot.open_modal(bk.EDIT, f"{run.id}:draft")

    response = await bot.submit(bk.EDIT_MODAL, view, {"output": {"value": '{"title": "' + "x" * 30 + '"}'}})
    answer = response.json()
    assert answer["response_action"] == "errors"
    assert "contract" in answer["errors"]["output"] and "title" in answer["errors"]["output"]
    response = await bot.submit(bk.EDIT_MODAL, view, {"output": {"value": "not json at all"}})
    assert "not valid JSON" in response.json()["errors"]["output"]

    await bot.idle()
    run = await bot.run(run.id)
    assert run.status == "awaiting_approval"
    async with bot.db.sessions() as session:
        assert list(await run_queries.decisions(session=session, run_id=run.id)) == []
        assert (await run_queries.get_step_run(session=session, run_id=run.id, step="draft")).output == {"title": "Owls"}
    assert bk.APPROVE in buttons(bot.thread(run)[0])


async def test_reject_asks_for_a_reason_and_ends_the_run_with_it(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}))
    bot = await start_bot(two_steps(fake_model))
    run = await bot.start_run()

    view = await bot.open_modal(bk.REJECT, f"{run.id}:draft")
    assert view["callback_id"] == bk.REJECT_MODAL
    response = await bot.submit(bk.REJECT_MODAL, view, {"reason": {"value": ""}})
    assert response.json()["response_action"] == "errors"  # a reason is required
    await bot.submit(bk.REJECT_MODAL, view, {"reason": {"value": "Off brand <!here>"}})
    await bot.idle()

    run = await bot.run(run.id)
    assert run.status == "rejected" and "Off brand" in run.error
    checkpoint = bot.thread(run)[0]
    assert f"Rejected by <@{BOSS}>" in text_of(checkpoint) and "Off brand &lt;!here&gt;" in text_of(checkpoint)
    assert "<!here>" not in text_of(checkpoint)
    assert "rejected" in text_of(bot.parent(run))
    assert fake_model.count == 1  # the second step never ran


async def test_an_outsiders_click_is_refused_ephemerally_and_recorded(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}))
    bot = await start_bot(two_steps(fake_model))
    run = await bot.start_run()

    await bot.click(bk.APPROVE, f"{run.id}:draft", user="U0MALLORY")
    await bot.click(bk.EDIT, f"{run.id}:draft", user="U0MALLORY")
    refusals = await bot.fake.wait_for_async(lambda f: len([e for e in f.ephemerals if e["user"] == "U0MALLORY"]) == 2 and f)
    assert all("Not allowed" in text for text in bot.ephemerals_for("U0MALLORY"))
    assert not refusals.views  # no modal for an outsider
    await bot.idle()
    run = await bot.run(run.id)
    assert run.status == "awaiting_approval"
    async with bot.db.sessions() as session:
        refused = list(await run_queries.events(session=session, run_id=run.id, kind="decision_refused"))
    assert sorted((e.actor, e.detail["action"]) for e in refused) == [("U0MALLORY", "approve"), ("U0MALLORY", "edit")]


async def test_an_outsiders_edit_or_reject_form_is_refused_inline_and_recorded(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}))
    bot = await start_bot(two_steps(fake_model))
    await bot.command("run writer")
    await bot.idle()
    run = await bot.only_run()
    await bot.click(bk.EDIT, f"{run.id}:draft", user=BOSS)
    await bot.click(bk.REJECT, f"{run.id}:draft", user=BOSS)
    edit, reject = (await bot.fake.wait_for_async(lambda f: len(f.views) == 2 and f.views, what="both modals"))

    response = await bot.submit(bk.EDIT_MODAL, edit, {"output": {"value": '{"title": "Mine"}'}}, user="U0MALLORY")
    assert "only the workflow's approvers may edit" in response.json()["errors"]["output"]
    response = await bot.submit(bk.REJECT_MODAL, reject, {"reason": {"value": "no"}}, user="U0MALLORY")
    assert "only the workflow's approvers may reject" in response.json()["errors"]["reason"]
    await bot.idle()
    assert (await bot.run(run.id)).status == "awaiting_approval"
    async with bot.db.sessions() as session:
        assert list(await run_queries.decisions(session=session, run_id=run.id)) == []
        refused = list(await run_queries.events(session=session, run_id=run.id, kind="decision_refused"))
    assert [(e.actor, e.detail["action"]) for e in refused] == [("U0MALLORY", "edit"), ("U0MALLORY", "reject")]


async def test_two_clicks_at_once_make_one_decision_and_the_other_is_told_who_was_first(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("done"))
    spec = two_steps(fake_model, approvers=[BOSS, "U0CAROL"])
    bot = await start_bot(spec)
    run = await bot.start_run()

    await asyncio.gather(
        bot.click(bk.APPROVE, f"{run.id}:draft", user=BOSS), bot.click(bk.APPROVE, f"{run.id}:draft", user="U0CAROL")
    )
    await bot.fake.wait_for_async(lambda f: any("Too late" in e["text"] for e in f.ephemerals), what="loser told")
    await bot.idle()
    async with bot.db.sessions() as session:
        [decision] = list(await run_queries.decisions(session=session, run_id=run.id))
    loser = "U0CAROL" if decision.decided_by == BOSS else BOSS
    [told] = [t for t in bot.ephemerals_for(loser) if "Too late" in t]
    assert f"<@{decision.decided_by}> approved this checkpoint first" in told
    assert (await bot.run(run.id)).status == "succeeded"
    assert fake_model.count == 2  # the next step ran once


async def test_a_user_group_approver_is_resolved_through_usergroups_users_list(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("done"))
    bot = await start_bot(two_steps(fake_model, approvers=["S0EDITORS"]))
    bot.fake.usergroups["S0EDITORS"] = ["U0DAVE"]
    run = await bot.start_run()
    assert "<!subteam^S0EDITORS>" in text_of(bot.parent(run))

    await bot.click(bk.APPROVE, f"{run.id}:draft", user="U0ERIN")  # not in the group
    await bot.click(bk.APPROVE, f"{run.id}:draft", user="U0DAVE")
    await bot.fake.wait_for_async(lambda f: any(e["user"] == "U0ERIN" for e in f.ephemerals))
    await bot.idle()
    assert (await bot.run(run.id)).status == "succeeded"
    lookups = bot.fake.calls_to("usergroups.users.list")
    assert [c.args["usergroup"] for c in lookups] == ["S0EDITORS"]  # cached: one lookup for both clicks
    async with bot.db.sessions() as session:
        [decision] = list(await run_queries.decisions(session=session, run_id=run.id))
    assert decision.decided_by == "U0DAVE"


async def test_pending_checkpoint_buttons_still_work_after_a_restart(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("done"))
    spec = two_steps(fake_model)
    first = await start_bot(spec)
    run = await first.start_run()
    await stop_bot(first)

    second = await start_bot(spec)
    await second.click(bk.APPROVE, f"{run.id}:draft", user=BOSS)
    await second.idle()
    assert (await second.run(run.id)).status == "succeeded"
