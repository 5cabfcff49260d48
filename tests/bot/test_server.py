"""The HTTP surface: /healthz tells whether the database answers; acks come back fast even with work in flight."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from pathlib import Path

import httpx

from bot.server import serve
from bot.settings import load_settings
from storage.db import connect
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.slack_requests import slash_command
from tests.helpers.polling import eventually
from tests.helpers.network import answers_healthz, free_port
from tests.helpers.slack_app import SECRET, TOKEN, StartBot, flow


async def test_healthz_is_200_with_json_when_the_database_answers(start_bot: StartBot, fake_model: FakeModel) -> None:
    bot = await start_bot(flow(fake_model))
    response = await bot.http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


async def test_healthz_is_503_when_the_database_does_not_answer(start_bot: StartBot, fake_model: FakeModel, tmp_path: Path) -> None:
    broken = connect(f"sqlite:///{tmp_path}/no/such/dir/overseer.db")
    bot = await start_bot(flow(fake_model), database=broken)
    response = await bot.http.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"
    await broken.dispose()


async def test_acks_are_fast_even_while_runs_are_working(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.default = Reply.slow(0.5, Reply.text("slow"))
    bot = await start_bot(flow(fake_model, steps=[{"name": "only", "model": "openai/gpt-4o-mini", "prompt": "x"}]))
    await bot.command("help")  # the first request pays for auth.test once
    bot.ack_times.clear()
    for _ in range(5):
        await bot.command("run writer")
    await asyncio.gather(*(bot.command("status") for _ in range(10)))
    worst, median = max(bot.ack_times), statistics.median(bot.ack_times)
    print(f"\nack latency over {len(bot.ack_times)} signed slash commands: median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    assert worst < 1.0
    await bot.idle()


async def test_serve_migrates_loads_the_workflows_and_answers_signed_commands(db_url: str, tmp_path: Path) -> None:
    """`overseer serve` as the CLI runs it: settings in, HTTP out."""
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "hello.yaml").write_text(
        "name: hello\nchannel: C0HELLO\nsteps:\n  - {name: only, tool: fetch_page, args: {url: 'http://127.0.0.1:9'}}\n"
    )
    (tmp_path / "wf" / "broken.yaml").write_text("name: broken\nsteps: []\n")  # skipped with a warning, not fatal
    port = free_port()
    with FakeSlack() as fake:
        settings = load_settings(
            slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=fake.api_url, database_url=db_url,
            workflows=tmp_path / "wf", host="127.0.0.1", port=port, poll_seconds=0.05,
        )
        task = asyncio.create_task(serve(settings))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                await eventually(lambda: answers_healthz(http), 20, "overseer serve to answer /healthz")
                body, headers = slash_command(SECRET, text="list", response_url=fake.response_url("serve"))
                assert (await http.post("/slack/events", content=body, headers=headers)).status_code == 200
                answer = await fake.wait_for_async(lambda f: f.ephemerals, what="list answer")
                assert "hello" in answer[0]["text"] and "broken" not in answer[0]["text"]
                assert (await http.post("/slack/events", content=body, headers={**headers, "X-Slack-Signature": "v0=00"})).status_code == 401
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
