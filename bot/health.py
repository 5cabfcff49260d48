"""GET /healthz that tells the truth: the database, the Socket Mode connection and the dispatcher.

200 when all answer; 503 naming what does not, e.g.
{"ok": false, "status": "unavailable", "database": "ok", "dispatcher": "backlog 340 s old"}.
The dispatcher counts as down when the oldest undelivered outbox message is older than a threshold
while Slack answers: a backlog that waits for Slack itself is not something a restart would fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from slack_sdk.web.async_client import AsyncWebClient

from storage import metrics_queries
from storage.db import Database
from storage.models import utcnow

log = structlog.get_logger("overseer.health")

STUCK_BACKLOG_SECONDS = 300.0


@dataclass
class Health:
    """What /healthz looks at; `socket_connected` is set by serve in Socket Mode (None in HTTP mode)."""

    db: Database
    client: AsyncWebClient
    database_ok: Callable[[], Awaitable[bool]]
    socket_connected: Callable[[], Awaitable[bool]] | None = None
    stuck_after_s: float = STUCK_BACKLOG_SECONDS
    timeout_s: float = 3.0

    async def check(self) -> dict[str, Any]:
        """One report: "ok" or what is wrong, per part, and `ok` over them all."""
        report: dict[str, Any] = {}
        database = await self.database_ok()
        report["database"] = "ok" if database else "unavailable"
        if self.socket_connected is not None:
            report["socket"] = "ok" if await self._socket() else "disconnected"
        report["dispatcher"], dispatching = await self._dispatcher(report) if database else ("unknown (no database)", True)
        ok = database and dispatching and report.get("socket", "ok") == "ok"
        return {"ok": ok, "status": "ok" if ok else "unavailable", **report}

    async def _socket(self) -> bool:
        assert self.socket_connected is not None
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self.socket_connected()
        except Exception as exc:  # noqa: BLE001 - any failure means "not connected"
            log.warning("health.socket_check_failed", error=f"{type(exc).__name__}: {exc}")
            return False

    async def _dispatcher(self, report: dict[str, Any]) -> tuple[str, bool]:
        """What the dispatcher's backlog says, and whether that counts as working."""
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.db.sessions() as session:
                    backlog, oldest = await metrics_queries.outbox_backlog(session=session, now=utcnow())
        except Exception as exc:  # noqa: BLE001 - the database answered SELECT 1 but not this
            return f"unknown ({type(exc).__name__})", True
        report["outbox_backlog"] = backlog
        if oldest < self.stuck_after_s:
            return "ok", True
        if not await self._slack_answers():
            report["slack"] = "unreachable"
            return f"waiting for Slack (backlog {oldest:.0f} s old)", True
        return f"backlog {oldest:.0f} s old", False

    async def _slack_answers(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.client.auth_test()
            return True
        except Exception as exc:  # noqa: BLE001 - unreachable, 5xx, rate limited: Slack is away
            log.info("health.slack_unreachable", error=f"{type(exc).__name__}: {exc}")
            return False
