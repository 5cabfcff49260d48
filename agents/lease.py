"""Leases: which process drives a run. Every write of a run's driver is fenced by its lease."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from sqlalchemy import Connection

from storage import driver_queries
from storage.db import Database, Write, run_writes_sync
from storage.driver_queries import AttemptValues

log = structlog.get_logger("overseer.lease")


def default_owner() -> str:
    """This process's name in leases: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def owner_process(owner: str) -> tuple[str, int] | None:
    """(host, pid) of a lease owner named by default_owner, or None for other names."""
    host, _, rest = owner.partition(":")
    pid, _, _tag = rest.partition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


class LeaseLost(Exception):
    """Another process took the run over, or it was cancelled: stop touching it."""


@dataclass(frozen=True)
class Lease:
    """This process's right to drive runs: the claim, the heartbeat and the fenced writes."""

    db: Database
    owner: str
    seconds: float
    clock: Callable[[], datetime]

    def claim(self, conn: Connection, run_id: str) -> Any:
        """Take the run's lease if nobody holds a live one (inside Database.write): what driving needs, or None."""
        return driver_queries.claim_run_returning(conn, run_id=run_id, owner=self.owner, now=self.clock(), lease_s=self.seconds)

    def fence(self, run_id: str, **values: Any) -> Write:
        """Update the run (guarded: only while this process holds a live lease and it is runnable)."""
        return driver_queries.fence_write(run_id=run_id, owner=self.owner, now=self.clock(), **values)

    def fence_step(self, run_id: str, step: str) -> Write:
        """The hot path's fence: set the run's current step."""
        return driver_queries.fence_step_write(run_id=run_id, owner=self.owner, now=self.clock(), step=step)

    def fence_charge(self, run_id: str, attempt: AttemptValues, *, step: str, status: str | None = None) -> Write:
        """Add an attempt's tokens and cost to the run; with `status`, park or end it (the lease is given up)."""
        return driver_queries.fence_charge_write(
            run_id=run_id, owner=self.owner, now=self.clock(), attempt=attempt, step=step, status=status
        )

    @staticmethod
    def write(conn: Connection, run_id: str, writes: Sequence[Write]) -> None:
        """Run a driver's writes in the transaction of `conn` (inside Database.write); the first is a fence
        (LeaseLost when it fails, and the transaction rolls back whole)."""
        if not run_writes_sync(conn, writes):
            raise LeaseLost(run_id)

    async def commit(self, run_id: str, writes: Sequence[Write]) -> None:
        """`write` in a transaction of its own: one hand-off to the database's writer."""
        if not await self.db.commit(writes):
            raise LeaseLost(run_id)

    async def release_all(self) -> int:
        """Give up every lease this process holds (a clean stop): its runs go on elsewhere, or at the next
        start, at once rather than when the leases lapse. How many."""
        return await self.db.write(lambda conn: driver_queries.hand_back_all(conn, owner=self.owner))

    async def heartbeat(self, run_id: str, task: asyncio.Task[Any] | None) -> bool:
        """Renew the lease every third of its length; cancel `task` and return False once it is lost."""
        interval = max(self.seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                now = self.clock()
                ours = await self.db.write(lambda conn: driver_queries.renew_lease(
                    conn, run_id=run_id, owner=self.owner, now=now, lease_s=self.seconds))
            except Exception as exc:  # noqa: BLE001 - the lease outlives two missed beats: try again
                log.warning("run.heartbeat_failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}")
                continue
            if not ours:
                if task is not None:
                    task.cancel()
                return False
