"""The review loop through Slack: Revise with a note, versions on buttons, N-of-M approvals, self-approval."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.slack import blocks as bk
from storage import checkpoint_queries as cq
from storage import run_queries
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.slack_app import ALICE, BOSS, CHANNEL, StartBot, buttons, flow, text_of

CAROL = "U0CAROL"
ALL_FOUR = (bk.APPROVE, bk.EDIT, bk.REVISE, bk.REJECT)


def reviewed(fake_model: FakeModel, checkpoint: Any = True, **extra: Any):
    """`writer`: a JSON draft at a checkpoint (with `checkpoint` settings), then a step that polishes its title."""
    return flow(fake_model, steps=[
        {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "Write about {{ inputs.topic }}", "checkpoint": checkpoint,
         "output": {"format": "json", "schema": {"type": "object", "required": ["title"]}}},
        {"name": "polish", "model": "openai/gpt-4o-mini", "prompt": "Polish {{ steps.draft.output.title }}"},
    ], **extra)


async def told(bot: Any, user: str, words: str) -> str:
    """The ephemeral `user` was sent containing `words`, once it arrives."""
    await bot.fake.wait_for_async(lambda f: any(words in e["text"] for e in f.ephemerals if e["user"] == user), what=words)
    return next(t for t in bot.ephemerals_for(user) if words in t)


async def test_revise_asks_for_a_note_reruns_the_step_and_the_new_version_takes_over_the_buttons(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.json({"title": "Barn owls"}), Reply.text("done"))
    bot = await start_bot(reviewed(fake_model))
    run = await bot.start_run()

    view = await bot.open_modal(bk.REVISE, f"{run.id}:draft:1")
    assert view["callback_id"] == bk.REVISE_MODAL and "2 revision(s) left" not in str(view) and "3 revision(s) left" in str(view)
    response = await bot.submit(bk.REVISE_MODAL, view, {"note": {"value": "  "}})
    assert "say what should change" in response.json()["errors"]["note"]  # a note is required; nothing changed
    await bot.submit(bk.REVISE_MODAL, view, {"note": {"value": "Name the species <!here>"}})
    await bot.idle()

    run = await bot.run(run.id)
    assert run.status == "awaiting_approval"
    assert fake_model.requests[1].body["messages"][-1]["content"].count("Name the species <!here>") == 1  # the note, to the model
    first, second = bot.thread(run)[:2]
    assert buttons(first) == {}  # the old version's buttons are gone
    assert f"sent back by <@{BOSS}>" in text_of(first) and "Name the species &lt;!here&gt;" in text_of(first)
    assert buttons(second) == {b: f"{run.id}:draft:2" for b in ALL_FOUR}
    assert f"v2, revised after <@{BOSS}>'s note" in text_of(second) and "Barn owls" in text_of(second)
    assert "<!here>" not in text_of(first) + text_of(second)

    for stale in ALL_FOUR:  # the old message's buttons, clicked late: refused, no modal opens
        await bot.click(stale, f"{run.id}:draft:1")
    await bot.fake.wait_for_async(lambda f: len([e for e in f.ephemerals if "a newer version is up" in e["text"]]) == 4,
                                  what="four refusals")
    assert len(bot.fake.views) == 1  # only the Revise modal opened at v1
    await bot.idle()
    async with bot.db.sessions() as session:
        assert list(await run_queries.decisions(session=session, run_id=run.id)) == []

    await bot.click(bk.APPROVE, f"{run.id}:draft:2")
    await bot.idle()
    assert (await bot.run(run.id)).status == "succeeded"
    assert fake_model.requests[-1].body["messages"][-1]["content"] == "Polish Barn owls"
    second = bot.fake.message(CHANNEL, second["ts"])
    assert buttons(second) == {} and f"Approved by <@{BOSS}>" in text_of(second) and "v2" in text_of(second)


async def test_at_max_revisions_revise_disappears_and_a_forged_click_is_refused(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.default = Reply.json({"title": "Owls"})
    bot = await start_bot(reviewed(fake_model, {"max_revisions": 1}))
    run = await bot.start_run()
    view = await bot.open_modal(bk.REVISE, f"{run.id}:draft:1")
    await bot.submit(bk.REVISE_MODAL, view, {"note": {"value": "shorter"}})
    await bot.idle()
    run = await bot.run(run.id)
    latest = bot.thread(run)[-1]
    assert set(buttons(latest)) == {bk.APPROVE, bk.EDIT, bk.REJECT}  # no Revise at the bound

    await bot.click(bk.REVISE, f"{run.id}:draft:2")
    assert "no revisions left" in await told(bot, BOSS, "no revisions left")
    await bot.idle()
    assert fake_model.count == 2 and len(bot.fake.views) == 1  # no second modal, no third call


async def test_two_approvals_show_progress_count_each_approver_once_and_then_go_on(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("done"))
    bot = await start_bot(reviewed(fake_model, {"approvals": 2}, approvers=[BOSS, CAROL]))
    run = await bot.start_run()

    await bot.click(bk.APPROVE, f"{run.id}:draft:1", user=BOSS)
    await bot.idle()
    [checkpoint] = bot.thread(run)
    assert f"1 of 2 approved, by <@{BOSS}>" in text_of(checkpoint)
    assert buttons(checkpoint) == {b: f"{run.id}:draft:1" for b in ALL_FOUR}  # still waiting for the second
    assert (await bot.run(run.id)).status == "awaiting_approval"

    await bot.click(bk.APPROVE, f"{run.id}:draft:1", user=BOSS)
    assert "already approved" in await told(bot, BOSS, "already approved")
    await bot.click(bk.APPROVE, f"{run.id}:draft:1", user=CAROL)
    await bot.idle()
    assert (await bot.run(run.id)).status == "succeeded" and fake_model.count == 2
    checkpoint = bot.fake.message(CHANNEL, checkpoint["ts"])
    assert buttons(checkpoint) == {} and f"Approved by <@{BOSS}>, <@{CAROL}>" in text_of(checkpoint)


async def test_racing_clicks_of_two_approvers_make_one_decision_and_one_next_step(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("done"))
    bot = await start_bot(reviewed(fake_model, {"approvals": 2}, approvers=[BOSS, CAROL]))
    run = await bot.start_run()
    await asyncio.gather(*(bot.click(bk.APPROVE, f"{run.id}:draft:1", user=who) for who in (BOSS, CAROL) * 3))
    await bot.idle()
    assert (await bot.run(run.id)).status == "succeeded"
    assert fake_model.count == 2  # the step after the checkpoint ran once
    async with bot.db.sessions() as session:
        [decision] = list(await run_queries.decisions(session=session, run_id=run.id))
        assert sorted(await cq.approvers(session=session, step_run_id=decision.step_run_id, version=1)) == [BOSS, CAROL]


async def test_without_self_approval_the_starter_is_refused_and_the_refusal_recorded(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("done"))
    bot = await start_bot(reviewed(fake_model, {"self_approval": False}, approvers=[ALICE, BOSS]))
    run = await bot.start_run()  # ALICE types the command
    assert run.started_by == ALICE

    await bot.click(bk.APPROVE, f"{run.id}:draft:1", user=ALICE)
    await bot.click(bk.EDIT, f"{run.id}:draft:1", user=ALICE)
    await bot.fake.wait_for_async(lambda f: len([e for e in f.ephemerals if e["user"] == ALICE and "Not allowed" in e["text"]]) == 2)
    assert all("self_approval" in t for t in bot.ephemerals_for(ALICE) if "Not allowed" in t)
    assert not bot.fake.views  # no edit modal for the starter
    await bot.idle()
    assert (await bot.run(run.id)).status == "awaiting_approval"
    async with bot.db.sessions() as session:
        refused = list(await run_queries.events(session=session, run_id=run.id, kind="decision_refused"))
    assert sorted((e.actor, e.detail["action"], e.detail["reason"]) for e in refused) == [
        (ALICE, "approve", "self_approval"), (ALICE, "edit", "self_approval")]

    await bot.click(bk.APPROVE, f"{run.id}:draft:1", user=BOSS)
    await bot.idle()
    assert (await bot.run(run.id)).status == "succeeded"


async def test_with_two_approvals_an_edit_posts_the_next_version_with_its_editors_approval(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("done"))
    bot = await start_bot(reviewed(fake_model, {"approvals": 2}, approvers=[BOSS, CAROL]))
    run = await bot.start_run()
    view = await bot.open_modal(bk.EDIT, f"{run.id}:draft:1")
    await bot.submit(bk.EDIT_MODAL, view, {"output": {"value": '{"title": "Barn owls"}'}})
    await bot.idle()
    first, second = bot.thread(run)[:2]
    assert buttons(first) == {} and f"edited by <@{BOSS}>" in text_of(first)
    assert buttons(second) == {b: f"{run.id}:draft:2" for b in ALL_FOUR}
    assert "Barn owls" in text_of(second) and f"1 of 2 approved, by <@{BOSS}>" in text_of(second)

    await bot.click(bk.APPROVE, f"{run.id}:draft:2", user=CAROL)
    await bot.idle()
    assert (await bot.run(run.id)).status == "succeeded"
    assert fake_model.requests[-1].body["messages"][-1]["content"] == "Polish Barn owls"
