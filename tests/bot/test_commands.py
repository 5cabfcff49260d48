"""`/overseer …`: clear answers for mistakes, a form for missing inputs, and nothing recorded for bad input."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from bot.slack import blocks as bk
from bot.slack import commands
from storage import run_queries
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.slack_app import ALICE, CHANNEL, StartBot, flow, text_of

SAY_HI = [{"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "hi"}]


def inputs_flow(fake_model: FakeModel, **extra: object):
    return flow(
        fake_model,
        inputs={"url": {"type": "string", "required": True, "description": "Page to update"},
                "tone": {"type": "string", "default": "friendly"},
                "count": {"type": "integer", "default": 3}},
        steps=[{"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "{{ inputs.url }} {{ inputs.tone }} {{ inputs.count }}"}],
        **extra,
    )


async def nothing_recorded(bot) -> None:
    async with bot.db.sessions() as session:
        assert list(await run_queries.list_runs(session=session)) == []
    assert await bot.outbox() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('run writer url="unclosed', "cannot read that command"),
        ("run nosuch", "Unknown workflow"),
        ("run writer url=x count=many", "must be a integer"),
        ("run writer url=x colour=red", "unknown input 'colour'"),
        ("run writer url", "is not key=value"),
        ("frobnicate", "unknown command"),
        ("status nosuchrun", "Unknown run"),
        ("run", "which workflow"),
    ],
)
async def test_bad_command_input_gets_an_ephemeral_answer_saying_how_to_write_it_and_records_nothing(
    start_bot: StartBot, fake_model: FakeModel, text: str, expected: str
) -> None:
    bot = await start_bot(inputs_flow(fake_model))
    response = await bot.command(text)
    assert response.status_code == 200
    await bot.idle()
    [answer] = bot.ephemerals_for(ALICE)
    assert expected in answer
    assert "/overseer" in answer  # says how to write it
    await nothing_recorded(bot)
    assert fake_model.count == 0


async def test_quoted_values_are_kept_whole(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("ok"))
    bot = await start_bot(inputs_flow(fake_model))
    run = await bot.start_run('run writer url=https://example.com/a?b=1&c=2 tone=“very formal” count=5')
    assert run.inputs == {"url": "https://example.com/a?b=1&c=2", "tone": "very formal", "count": 5}
    assert run.status == "succeeded" and run.channel == CHANNEL


async def test_run_without_a_required_input_opens_a_modal_with_the_specs_fields_and_submitting_it_starts_the_run(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.text("ok"))
    bot = await start_bot(inputs_flow(fake_model))
    await bot.command("run writer tone=dry", channel="C0HERE")
    view = await bot.modal("run modal")
    assert bot.fake.calls_to("views.open")[0].args["trigger_id"] == "T.trigger"
    fields = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert list(fields) == ["input:url", "input:tone", "input:count"]
    assert fields["input:url"]["optional"] is False and fields["input:tone"]["optional"] is True
    assert fields["input:tone"]["element"]["initial_value"] == "dry"  # what was typed is kept
    assert "Page to update" in fields["input:url"]["hint"]["text"]
    await nothing_recorded(bot)

    response = await bot.submit(bk.RUN_MODAL, view, {"input:url": {"value": ""}, "input:tone": {"value": "dry"},
                                                      "input:count": {"value": "2"}}, user=ALICE)
    assert response.json()["errors"] == {"input:url": "missing required input 'url' for writer"}
    response = await bot.submit(bk.RUN_MODAL, view, {"input:url": {"value": "https://x.test"}, "input:tone": {"value": "dry"},
                                                      "input:count": {"value": "two"}}, user=ALICE)
    assert "input:count" in response.json()["errors"]
    await nothing_recorded(bot)

    await bot.submit(bk.RUN_MODAL, view, {"input:url": {"value": "https://x.test"}, "input:tone": {"value": "dry"},
                                          "input:count": {"value": "2"}}, user=ALICE)
    await bot.idle()
    run = await bot.only_run()
    assert run.inputs == {"url": "https://x.test", "tone": "dry", "count": 2} and run.status == "succeeded"
    assert run.started_by == ALICE and run.trigger == "slack"
    assert any("Started run" in t for t in bot.ephemerals_for(ALICE))


async def test_starters_limit_who_may_start_a_workflow(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("ok"))
    bot = await start_bot(flow(fake_model, starters=["U0BOB", "S0STARTERS"], steps=SAY_HI))
    bot.fake.usergroups["S0STARTERS"] = ["U0CAROL"]
    await bot.command("run writer", user=ALICE)
    await bot.idle()
    [answer] = bot.ephemerals_for(ALICE)
    assert "Not allowed" in answer and "<@U0BOB>" in answer
    await nothing_recorded(bot)

    await bot.command("run writer", user="U0CAROL")  # a member of a starters group
    await bot.idle()
    assert (await bot.only_run()).started_by == "U0CAROL"


async def test_a_refused_start_cancel_or_retry_is_answered_and_recorded_like_a_refused_click(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.refusal())
    bot = await start_bot(flow(fake_model, starters=[ALICE], steps=[{"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "hi"}]))
    await bot.command("run writer", user="U0MALLORY")
    await bot.idle()
    await nothing_recorded(bot)
    await bot.command("run writer")
    await bot.idle()
    run = await bot.only_run()
    assert run.status == "failed"

    await bot.command(f"retry {run.id}", user="U0MALLORY")
    await bot.idle()  # each command's work runs after its ack: one at a time, so the events keep their order
    await bot.command(f"cancel {run.id}", user="U0MALLORY")
    await bot.idle()
    answers = bot.ephemerals_for("U0MALLORY")
    assert len(answers) == 3 and all("Not allowed" in a for a in answers)
    assert (await bot.run(run.id)).status == "failed"
    async with bot.db.sessions() as session:
        starts = list(await run_queries.events(session=session, kind="start_refused"))
        actions = list(await run_queries.events(session=session, kind="action_refused"))
    assert [(e.run_id, e.actor, e.detail) for e in starts] == [(None, "U0MALLORY", {"workflow": "writer"})]
    assert [(e.run_id, e.actor, e.detail["action"]) for e in actions] == [(run.id, "U0MALLORY", "retry"), (run.id, "U0MALLORY", "cancel")]


async def test_a_refused_run_form_is_answered_inline_and_recorded(start_bot: StartBot, fake_model: FakeModel) -> None:
    bot = await start_bot(inputs_flow(fake_model, starters=[ALICE]))
    await bot.command("run writer")  # the form opens for a starter
    view = (await bot.fake.wait_for_async(lambda f: f.views, what="run modal"))[-1]
    response = await bot.submit(bk.RUN_MODAL, view, {"input:url": {"value": "https://x.test"}}, user="U0MALLORY")
    assert response.json() == {"response_action": "errors", "errors": {"input:url": "you may not start writer"}}
    await bot.idle()
    await nothing_recorded(bot)
    async with bot.db.sessions() as session:
        [refused] = await run_queries.events(session=session, kind="start_refused")
    assert refused.actor == "U0MALLORY" and refused.detail == {"workflow": "writer"}


async def test_list_status_cancel_and_retry(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.refusal(), Reply.text("fine"))
    bot = await start_bot(flow(fake_model, steps=SAY_HI))
    await bot.command("list")
    await bot.idle()
    assert "writer" in bot.fake.ephemerals[-1]["text"]

    run = await bot.start_run()
    assert run.status == "failed"
    await bot.command("status")
    await bot.command(f"status {run.id[:6]}")  # a unique prefix is enough
    await bot.idle()
    assert run.id in bot.ephemerals_for(ALICE)[-2]
    assert "failed" in text_of(bot.fake.ephemerals[-1])

    await bot.command(f"retry {run.id}", user="U0MALLORY")
    await bot.idle()
    assert "Not allowed" in bot.ephemerals_for("U0MALLORY")[-1]
    await bot.command(f"retry {run.id}")  # the starter
    await bot.idle()
    assert (await bot.run(run.id)).status == "succeeded"

    await bot.command(f"cancel {run.id}")
    await bot.idle()
    assert "already succeeded" in bot.ephemerals_for(ALICE)[-1]


async def test_help_lists_every_subcommand(start_bot: StartBot, fake_model: FakeModel) -> None:
    bot = await start_bot(inputs_flow(fake_model))
    await bot.command("")
    await bot.idle()
    [answer] = bot.ephemerals_for(ALICE)
    for word in ("run", "list", "status", "cancel", "retry", "digest", "help"):
        assert f"/overseer {word}" in answer


@pytest.mark.skipif(
    importlib.util.find_spec("agents.digest") is None or importlib.util.find_spec("bot.digest") is None,
    reason="agents/digest.py and bot/digest.py are written by another helper and are not here yet",
)
async def test_digest_answers_ephemerally(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("ok"))
    bot = await start_bot(flow(fake_model, steps=SAY_HI))
    await bot.start_run()
    await bot.command("digest 7")
    await bot.idle()
    answer = bot.fake.ephemerals[-1]
    assert answer["user"] == ALICE and answer["text"]
    await bot.command("digest lots")
    await bot.idle()
    assert "not a number of days" in bot.ephemerals_for(ALICE)[-1]


async def test_where_the_bot_is_not_in_the_channel_the_answer_goes_through_the_response_url(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    bot = await start_bot(inputs_flow(fake_model))
    bot.fake.error_next("chat.postEphemeral", "not_in_channel")
    await bot.command("run nosuch", channel="C0ELSEWHERE")
    await bot.idle()
    [posted] = bot.fake.responses
    assert posted.token == f"command-{ALICE}"
    assert posted.body["response_type"] == "ephemeral" and "Unknown workflow" in posted.body["text"]


@contextlib.asynccontextmanager
async def writes_held(db, seconds: float) -> AsyncIterator[None]:
    """Hold the database's write lock for `seconds` from another connection (a slow disk, a long writer)."""
    async def hold() -> None:
        async with db.engine.begin() as conn:
            lock = "DELETE FROM runs WHERE 1 = 0" if db.is_sqlite else "LOCK TABLE runs IN EXCLUSIVE MODE"
            await conn.execute(text(lock))  # SQLite: the first write takes the lock (BEGIN IMMEDIATE)
            held.set()
            await asyncio.sleep(seconds)

    held = asyncio.Event()
    task = asyncio.create_task(hold())
    await held.wait()
    try:
        yield
    finally:
        await task


async def test_a_run_command_is_committed_before_it_is_acknowledged(start_bot: StartBot, fake_model: FakeModel) -> None:
    """The ack went out before the run was recorded: kill -9 in between lost an acknowledged command.
    With the database slow to write, the ack waits for the commit (within its budget)."""
    fake_model.default = Reply.text("ok")
    bot = await start_bot(flow(fake_model, steps=SAY_HI))
    async with writes_held(bot.db, 0.5):
        response = await bot.command("run writer")
        assert response.status_code == 200 and response.text == ""
        async with bot.db.sessions() as session:  # the moment Slack has its answer, the run is there
            assert len(list(await run_queries.list_runs(session=session))) == 1
    for _ in range(3):
        await bot.command("run writer")
    assert max(bot.ack_times) < commands.ACK_BUDGET and min(bot.ack_times) < 0.5
    await bot.idle()
    assert sum("Started run" in t for t in bot.ephemerals_for(ALICE)) == 4


async def test_a_run_whose_start_outlasts_the_ack_budget_is_acknowledged_as_not_confirmed_yet(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    fake_model.default = Reply.text("ok")
    bot = await start_bot(flow(fake_model, steps=SAY_HI))
    async with writes_held(bot.db, commands.ACK_BUDGET + 0.5):
        response = await bot.command("run writer")
        assert response.text == commands.NOT_CONFIRMED  # Bolt answers a text-only ack in plain text
        assert bot.ack_times[-1] < 3.0  # within Slack's 3 seconds
    await bot.idle()
    assert (await bot.only_run()).status == "succeeded"
    assert any("Started run" in t for t in bot.ephemerals_for(ALICE))  # the confirmation follows


async def test_during_a_database_outage_the_person_is_told_the_database_is_unavailable(
    start_bot: StartBot, fake_model: FakeModel, tmp_path
) -> None:
    from storage.db import connect

    broken = connect(f"sqlite:///{tmp_path}/no/such/dir/overseer.db")
    bot = await start_bot(flow(fake_model, steps=SAY_HI), database=broken)
    response = await bot.command("run writer")
    assert response.status_code == 200
    await bot.services.context.settle()
    [answer] = bot.ephemerals_for(ALICE)
    assert "database is not answering" in answer and "Something went wrong" not in answer
    await broken.dispose()


async def test_command_text_over_the_cap_is_answered_at_once_and_never_parsed(start_bot: StartBot, fake_model: FakeModel) -> None:
    """A 1 MB slash command once held the event loop for 3 minutes in shlex.split."""
    bot = await start_bot(inputs_flow(fake_model))
    tricky = 'run writer url="' + "=\\ '" * 60_000  # unbalanced quotes and escapes: the slowest kind to split
    response = await bot.command(tricky)
    assert response.status_code == 200 and bot.ack_times[-1] < 1.0
    await bot.idle()
    [answer] = bot.ephemerals_for(ALICE)
    assert "at most 12,000 are read" in answer and "/overseer run WORKFLOW" in answer
    await nothing_recorded(bot)
