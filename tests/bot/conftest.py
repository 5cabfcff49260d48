"""The real bot app under uvicorn on loopback, the real slack_sdk client pointed at FakeSlack, signed requests."""

from __future__ import annotations

import asyncio
import faulthandler
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from agents.engine import EngineSettings
from agents.loading import parse_spec
from agents.spec import WorkflowSpec
from bot.server import Services, build_services, create_asgi_app
from bot.slack.dispatcher import DispatcherSettings
from storage import queries
from storage.db import Database
from sqlalchemy import select

from storage.models import OutboxMessage, Run
from storage.status import RUNNABLE
from tests.fakes.fake_model import FakeModel
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.slack_requests import block_action, slash_command, view_submission

SECRET = "test-signing-secret-0123456789abcdef"
TOKEN = "xoxb-test-token"
CHANNEL = "C0RUNS"
BOSS = "U0BOSS"  # the approver in most specs
ALICE = "U0ALICE"  # who types commands


def flow(fake: FakeModel, *, steps: list[dict[str, Any]] | None = None, **extra: Any) -> WorkflowSpec:
    """A spec whose model steps talk to the fake model (the engine tests' model_spec pattern)."""
    base = {"api_base": fake.api_base, "api_key_env": "FAKE_KEY"}
    steps = steps or [{"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "Write about {{ inputs.topic }}", "checkpoint": True}]
    data = {
        "name": "writer",
        "channel": CHANNEL,
        "approvers": [BOSS],
        "inputs": {"topic": {"type": "string", "default": "owls"}},
        "steps": [({**base, **s} if "model" in s else s) for s in steps],
        **extra,
    }
    return parse_spec(data, "test.yaml")


def dispatcher_settings(**overrides: Any) -> DispatcherSettings:
    values = {"owner": "test-dispatcher", "poll_seconds": 0.05, "backoff_base": 0.05, "backoff_max": 0.2, "claim_seconds": 30.0}
    return DispatcherSettings(**{**values, **overrides})


@dataclass
class Bot:
    """One running bot: its services, the fake Slack it talks to, and a signed-request client."""

    services: Services
    fake: FakeSlack
    http: httpx.AsyncClient
    server: uvicorn.Server
    task: asyncio.Task[Any]
    ack_times: list[float] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.services.db

    async def post(self, body: str, headers: dict[str, str]) -> httpx.Response:
        loop = asyncio.get_running_loop()
        start = loop.time()
        response = await self.http.post("/slack/events", content=body, headers=headers)
        self.ack_times.append(loop.time() - start)
        return response

    async def command(self, text: str, *, user: str = ALICE, channel: str = "C0CONTENT", **kw: Any) -> httpx.Response:
        kw.setdefault("response_url", self.fake.response_url(f"command-{user}"))  # never Slack's real hooks
        return await self.post(*slash_command(SECRET, text=text, user_id=user, channel_id=channel, **kw))

    async def click(self, action_id: str, value: str, *, user: str = BOSS, **kw: Any) -> httpx.Response:
        kw.setdefault("response_url", self.fake.response_url(f"click-{user}"))
        return await self.post(*block_action(SECRET, action_id=action_id, value=value, user_id=user, channel_id=CHANNEL, **kw))

    async def submit(self, callback_id: str, view: dict[str, Any], values: dict[str, dict[str, str]], *, user: str = BOSS) -> httpx.Response:
        return await self.post(*view_submission(SECRET, callback_id=callback_id, private_metadata=view["private_metadata"],
                                                values=values, user_id=user))

    async def idle(self, timeout: float = 20.0) -> None:
        """Wait until no run is being driven or runnable and everything in the outbox was delivered."""
        async with asyncio.timeout(timeout):
            while True:
                await self.services.context.settle(timeout)
                await self.services.runner.wait_idle(timeout)
                await self.services.dispatcher.drain(timeout)
                async with self.db.sessions() as session:
                    runnable = (await session.scalars(select(Run.id).where(Run.status.in_(RUNNABLE)))).all()
                    due = (await session.scalars(select(OutboxMessage.id).where(OutboxMessage.delivered_at.is_(None)))).all()
                if not runnable and not due and not self.services.runner.active and not self.services.context.inflight:
                    return
                await asyncio.sleep(0.02)

    async def outbox(self, run_id: str | None = None) -> list[OutboxMessage]:
        async with self.db.sessions() as session:
            return list(await queries.outbox_since(session=session, after_id=0, run_id=run_id))

    async def run(self, run_id: str) -> Any:
        async with self.db.sessions() as session:
            return await queries.get_run(session=session, run_id=run_id)

    async def only_run(self) -> Any:
        async with self.db.sessions() as session:
            runs = list(await queries.list_runs(session=session))
        assert len(runs) == 1, runs
        return runs[0]

    def parent(self, run: Any) -> dict[str, Any]:
        assert run.message_ts, "no parent message yet"
        message = self.fake.message(CHANNEL if run.channel == CHANNEL else run.channel, run.message_ts)
        assert message is not None
        return message

    def thread(self, run: Any) -> list[dict[str, Any]]:
        return self.fake.thread(run.channel, run.message_ts)

    def ephemerals_for(self, user: str) -> list[str]:
        return [e["text"] for e in self.fake.ephemerals if e["user"] == user]


def text_of(message: dict[str, Any]) -> str:
    """Everything a person could read in a message: its text and every block, as JSON."""
    return (message.get("text") or "") + json.dumps(message.get("blocks") or [], ensure_ascii=False)


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """action_id -> value of the message's buttons."""
    found = {}
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("type") == "button":
                found[element["action_id"]] = element["value"]
    return found


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A stuck test dumps every thread's stack and ends the session instead of hanging CI."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


StartBot = Callable[..., Awaitable[Bot]]


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
        config = uvicorn.Config(create_asgi_app(services), host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on", access_log=False)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
        bot = Bot(services, fake_slack, http, server, task)
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        await stop_bot(bot)


async def stop_bot(bot: Bot) -> None:
    """Stop one bot (its HTTP server and background tasks), as a restart would."""
    if bot.task.done():
        return
    await bot.http.aclose()
    bot.server.should_exit = True
    await asyncio.wait_for(bot.task, 10)
