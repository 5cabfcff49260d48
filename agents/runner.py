"""Drives runnable runs in the background: new ones, decided ones, and those whose driver died."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from agents.engine import Engine
from agents.slots import Slots
from storage import driver_queries

log = structlog.get_logger("overseer.runner")


class Runner:
    """Claims runnable runs (queued, or running under an expired lease) and advances them."""

    def __init__(self, engine: Engine, *, concurrency: int = 64, poll_seconds: float = 2.0) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.slots = Slots(concurrency, on_free=self.kick)
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[str]] = {}
        # One tick at a time: on PostgreSQL a tick's SELECT ... SKIP LOCKED passes over the rows another
        # tick holds, so a second tick could see nothing to do while the first is still starting the work.
        self._tick_lock = asyncio.Lock()
        self._stopping = False

    def kick(self) -> None:
        """Look for work now rather than at the next poll."""
        self._wake.set()

    @property
    def active(self) -> set[str]:
        """Ids of the runs this process is driving."""
        return set(self._tasks)

    async def run_forever(self) -> None:
        """Poll and drive until stopped."""
        while not self._stopping:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the loop
                log.exception("runner.tick_failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def tick(self) -> list[str]:
        """Start driving every runnable run we have a free slot for; returns the ids started.

        A run waiting out a backoff holds no slot, so runs of other workflows go on meanwhile."""
        async with self._tick_lock:
            return await self._tick()

    async def _tick(self) -> list[str]:
        room = self.slots.free
        if room <= 0:
            return []
        now, limit = self.engine.clock(), room + len(self._tasks)
        ids = await self.engine.db.read(lambda conn: driver_queries.runnable_run_ids(conn, now=now, limit=limit))
        started = []
        for run_id in ids:
            if self._stopping or run_id in self._tasks or self.slots.free <= 0:
                continue
            task = asyncio.create_task(self._drive(run_id), name=f"run:{run_id}")
            self.slots.take(task)
            self._tasks[run_id] = task
            started.append(run_id)
        return started

    async def _drive(self, run_id: str) -> str:
        self.slots.bind()
        try:
            return await self.engine.advance(run_id)
        except Exception:  # noqa: BLE001 - one broken run must not take the others down
            log.exception("runner.run_crashed", run_id=run_id)
            return "error"
        finally:
            self._tasks.pop(run_id, None)
            await self.slots.give()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is being driven and nothing is runnable (tests and the CLI)."""
        async with asyncio.timeout(timeout):
            while True:
                await self.tick()
                if not self._tasks:
                    return
                await asyncio.wait(list(self._tasks.values()))

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop polling, cancel the runs in flight (each loses only its current call) and release their
        leases, so a peer or the next start takes them over at once."""
        self._stopping = True
        self.kick()
        for task in list(self._tasks.values()):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks.values(), return_exceptions=True), timeout)
        try:  # bounded: a database that cannot take the write now must not hold the stop; leases lapse anyway
            released = await asyncio.wait_for(self.engine.lease.release_all(), max(timeout, 1.0))
        except Exception as exc:  # noqa: BLE001 - stopping (a timeout included): report and go on
            log.warning("runner.release_failed", error=f"{type(exc).__name__}: {exc}")
            return
        log.info("runner.stopped", leases_released=released)
