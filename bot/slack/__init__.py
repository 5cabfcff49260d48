"""The Slack surface: Bolt listeners, Block Kit, the outbox dispatcher. Only this package speaks Slack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

    from agents.engine import Engine
    from agents.runner import Runner
    from agents.spec import WorkflowSpec
    from bot.pages.links import Links
    from bot.slack.directory import Directory
    from storage.db import Database


@dataclass
class BotContext:
    """What the listeners need, handed to each `register(app, ctx)`; no configuration is read here."""

    db: Database
    engine: Engine
    runner: Runner
    client: AsyncWebClient
    directory: Directory
    specs: dict[str, WorkflowSpec]
    command: str = "/overseer"
    kick_dispatcher: Callable[[], None] = field(default=lambda: None)
    inflight: int = 0  # listener bodies still working after their ack
    links: Links | None = None  # the run pages' signed links (a public URL set: answers link to them)

    @contextlib.asynccontextmanager
    async def working(self) -> AsyncIterator[None]:
        """Count a listener's work, so shutdown (and tests) can wait for what was acked but not done."""
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every acked request's work is done (or `timeout`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.inflight:
                    await asyncio.sleep(0.01)

    def kick(self) -> None:
        """Something changed: drive runs and deliver announcements now rather than at the next poll."""
        self.runner.kick()
        self.kick_dispatcher()
