"""The HTTP surface: /healthz tells whether the database (and in Socket Mode, Slack) answers; acks come back fast
even with work in flight; a Slack token Slack refuses stops the start at once."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
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
from tests.helpers.processes import overseer_env, spawn_overseer
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
    # Slack gives up on an ack after 3 s; a run is committed before its ack, so leave room for a slow disk.
    # How fast acks are is measured by bench/slack_ack.py, not here.
    assert worst < 2.5
    await bot.idle()


async def test_warm_up_freezes_the_heap_so_collections_skip_the_model_library(start_bot: StartBot, fake_model: FakeModel) -> None:
    """After warm-up litellm's objects sit in the permanent generation, and young collections are rarer."""
    await start_bot(flow(fake_model))  # warms up, as serve() does
    assert gc.get_freeze_count() > 100_000
    assert gc.get_threshold()[0] >= 10_000


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


async def test_a_refused_app_token_stops_serve_at_once_with_one_line(db_url: str, tmp_path: Path, fake_slack: FakeSlack) -> None:
    """Socket Mode with a bad app token used to retry every 10 s for ever while /healthz said ok."""
    (tmp_path / "wf").mkdir()
    fake_slack.error_next("apps.connections.open", "invalid_auth")
    env = overseer_env(SLACK_BOT_TOKEN=TOKEN, SLACK_APP_TOKEN="xapp-1-A0TEST-revoked", SLACK_API_URL=fake_slack.api_url,
                       DATABASE_URL=db_url, OVERSEER_WORKFLOWS=str(tmp_path / "wf"), OVERSEER_HOST="127.0.0.1", PORT=str(free_port()))
    started = time.monotonic()
    proc = await spawn_overseer(env, "serve", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err
    assert err.decode().strip().splitlines() == ["overseer: SLACK_APP_TOKEN: Slack refused it (invalid_auth); "
                                                 "use an app-level token with connections:write"]
    assert [c.method for c in fake_slack.calls] == ["apps.connections.open"]  # asked once, not again every 10 s
    print(f"\nbad app token: serve stopped after {time.monotonic() - started:.1f}s (interpreter start included)")


async def test_in_socket_mode_health_says_503_until_slack_is_connected_and_no_slack_route_is_open(
    db_url: str, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    """The fake grants a WebSocket URL that nothing answers: the client keeps trying, and /healthz says so."""
    (tmp_path / "wf").mkdir()
    port = free_port()
    settings = load_settings(slack_bot_token=TOKEN, slack_app_token="xapp-1-A0TEST-fine", slack_api_url=fake_slack.api_url,
                             database_url=db_url, workflows=tmp_path / "wf", host="127.0.0.1", port=port, poll_seconds=0.05)
    task = asyncio.create_task(serve(settings, tasks=[]))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async def health() -> httpx.Response | None:
                with contextlib.suppress(httpx.HTTPError):
                    return await http.get("/healthz", timeout=1)
                return None

            response = await eventually(health, 20, "overseer serve to answer /healthz")
            assert response.status_code == 503
            # "socket" is the Socket Mode connection ("slack" in a report says whether the Web API answers).
            report = response.json()
            assert {k: report.get(k) for k in ("status", "database", "socket")} == {
                "status": "unavailable", "database": "ok", "socket": "disconnected"}
            body, headers = slash_command(SECRET, text="run writer")
            assert (await http.post("/slack/events", content=body, headers=headers)).status_code == 404
        assert fake_slack.calls_to("apps.connections.open")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
