"""The real bot app under uvicorn on loopback, the real slack_sdk client pointed at FakeSlack, signed requests."""

from __future__ import annotations

import asyncio
import faulthandler
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from agents.engine import EngineSettings
from agents.spec import WorkflowSpec
from bot.server import build_services, create_asgi_app
from storage.db import Database
from tests.fakes.fake_slack import FakeSlack
from tests.helpers.polling import eventually
from tests.helpers.slack_app import SECRET, TOKEN, Bot, StartBot, dispatcher_settings, stop_bot


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A stuck test dumps every thread's stack and ends the session instead of hanging CI."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
async def start_bot(db: Database, fake_slack: FakeSlack, engine_settings: EngineSettings) -> AsyncIterator[StartBot]:
    """Start the real app (uvicorn on a free loopback port) with the given specs; stopped at teardown."""
    bots: list[Bot] = []

    async def start(*specs: WorkflowSpec, database: Database | None = None, **kw: Any) -> Bot:
        services = build_services(
            db=database or db, specs={s.name: s for s in specs}, bot_token=TOKEN, signing_secret=SECRET,
            slack_api_url=fake_slack.api_url, engine_settings=engine_settings,
            dispatcher_settings=kw.pop("dispatcher", None) or dispatcher_settings(), runner_poll_seconds=0.05,
            slack_retry_interval=0.01, tasks=[], **kw,
        )
        await services.warm_up()  # as serve() does: the model library's first use would stall the loop mid-test
        config = uvicorn.Config(create_asgi_app(services), host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on", access_log=False)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())

        def started() -> bool:
            if task.done():
                task.result()  # a server that died starting says why
            return server.started

        await eventually(started, 10, "the bot's HTTP server to start", interval=0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
        bot = Bot(services, fake_slack, http, server, task)
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        await stop_bot(bot)
