"""The bot under test as the Slack tests drive it: signed requests in, FakeSlack's state and the database out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from sqlalchemy import select

from agents.spec import WorkflowSpec
from bot.server import Services
from bot.slack.dispatcher import DispatcherSettings
from storage.db import Database
from storage.models import OutboxMessage, Run
from storage.status import RUNNABLE
from tests.fakes.fake_model import FakeModel
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.slack_requests import block_action, slash_command, view_submission
from tests.helpers import runs
from tests.helpers.specs import MODEL, model_spec

SECRET = "test-signing-secret-0123456789abcdef"
TOKEN = "xoxb-test-token"
CHANNEL = "C0RUNS"
BOSS = "U0BOSS"  # the approver in most specs
ALICE = "U0ALICE"  # who types commands
DRAFT = {"name": "draft", "model": MODEL, "prompt": "Write about {{ inputs.topic }}", "checkpoint": True}


def flow(fake: FakeModel, *, steps: list[dict[str, Any]] | None = None, **extra: Any) -> WorkflowSpec:
    """The Slack tests' `writer`: posts to CHANNEL, BOSS approves, one checkpointed draft about `topic` by default."""
    fields = {"name": "writer", "channel": CHANNEL, "approvers": [BOSS],
              "inputs": {"topic": {"type": "string", "default": "owls"}}, **extra}
    return model_spec(fake, steps=steps or [DRAFT], **fields)


def dispatcher_settings(**overrides: Any) -> DispatcherSettings:
    """A dispatcher that polls, backs off and paces channels in tenths of a second or less."""
    values = {"owner": "test-dispatcher", "poll_seconds": 0.05, "backoff_base": 0.05, "backoff_max": 0.2, "claim_seconds": 30.0,
              "channel_interval": 0.01}
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

    async def start_run(self, text: str = "run writer", **kw: Any) -> Run:
        """Type a command that starts a run, wait until everything settles, and return that run (the only one)."""
        await self.command(text, **kw)
        await self.idle()
        return await self.only_run()

    async def click(self, action_id: str, value: str, *, user: str = BOSS, **kw: Any) -> httpx.Response:
        kw.setdefault("response_url", self.fake.response_url(f"click-{user}"))
        return await self.post(*block_action(SECRET, action_id=action_id, value=value, user_id=user, channel_id=CHANNEL, **kw))

    async def modal(self, what: str) -> dict[str, Any]:
        """The view opened last, once one is open."""
        return (await self.fake.wait_for_async(lambda f: f.views, what=what))[-1]

    async def open_modal(self, action_id: str, value: str, *, user: str = BOSS) -> dict[str, Any]:
        """Click a button that opens a modal and return the modal."""
        await self.click(action_id, value, user=user)
        return await self.modal(f"the modal {action_id} opens")

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
        return await runs.outbox_of(self, run_id)

    async def run(self, run_id: str) -> Any:
        return await runs.get_run(self, run_id)

    async def only_run(self) -> Any:
        return await runs.only_run(self)

    def parent(self, run: Any) -> dict[str, Any]:
        assert run.message_ts, "no parent message yet"
        message = self.fake.message(CHANNEL if run.channel == CHANNEL else run.channel, run.message_ts)
        assert message is not None
        return message

    def thread(self, run: Any) -> list[dict[str, Any]]:
        return self.fake.thread(run.channel, run.message_ts)

    def ephemerals_for(self, user: str) -> list[str]:
        return [e["text"] for e in self.fake.ephemerals if e["user"] == user]


StartBot = Callable[..., Awaitable[Bot]]  # the start_bot fixture: start_bot(*specs, database=None, dispatcher=None)


async def stop_bot(bot: Bot) -> None:
    """Stop one bot (its HTTP server and background tasks), as a restart would."""
    if bot.task.done():
        return
    await bot.http.aclose()
    bot.server.should_exit = True
    await asyncio.wait_for(bot.task, 10)


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
