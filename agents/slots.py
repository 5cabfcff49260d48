"""Work slots: at most N runs at work at once, and a run waiting out a backoff gives its slot back.

A runner takes a slot for each run it drives; the retry sleep (agents.steps) finds the slot of the run
it belongs to through a context variable, gives it back for the wait and takes one again after, so
runs of one workflow that wait on a slow provider never keep another workflow's runs queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar

_CURRENT: ContextVar[Slots | None] = ContextVar("overseer_slots", default=None)


class Slots:
    """A counter of runs at work, with a wait for a free slot."""

    def __init__(self, size: int, *, on_free: Callable[[], None] = lambda: None) -> None:
        self.size = size
        self._holders: set[asyncio.Task[object]] = set()
        self._on_free = on_free
        self._freed = asyncio.Condition()

    @property
    def busy(self) -> int:
        """Slots held."""
        return len(self._holders)

    @property
    def free(self) -> int:
        """Slots nobody holds."""
        return max(self.size - self.busy, 0)

    def take(self, task: asyncio.Task[object]) -> None:
        """Give a task just created a slot (the caller checked `free`); the task calls `bind` first."""
        self._holders.add(task)

    def bind(self) -> None:
        """Make the running task's backoff waits give its slot back."""
        _CURRENT.set(self)

    async def give(self) -> None:
        """The running task lets its slot go (nothing, if it holds none)."""
        task = asyncio.current_task()
        if task not in self._holders:
            return
        self._holders.discard(task)  # type: ignore[arg-type]
        async with self._freed:
            self._freed.notify_all()
        self._on_free()

    async def retake(self) -> None:
        """The running task waits for a free slot and holds it."""
        task = asyncio.current_task()
        async with self._freed:
            await self._freed.wait_for(lambda: self.busy < self.size)
            if task is not None:
                self._holders.add(task)


async def wait_out(seconds: float) -> None:
    """Sleep through a backoff; the run's slot (if a runner gave it one) is free meanwhile."""
    slots = _CURRENT.get()
    if slots is None:
        await asyncio.sleep(seconds)
        return
    await slots.give()
    try:
        await asyncio.sleep(seconds)
    finally:
        await slots.retake()
