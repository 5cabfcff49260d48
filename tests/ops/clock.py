"""A clock tests move by hand; engines and schedulers take it as `clock=`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from agents.engine import Engine, EngineSettings


class Clock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return self.now


def clocked_engine(db: Any, clock: Clock, owner: str = "test-owner") -> Engine:
    """An engine on `db` whose time is `clock`, with tiny retry delays."""
    return Engine(db, settings=EngineSettings(owner=owner, lease_seconds=5.0, delay_scale=0.001), clock=clock)


async def write_draft(**_: object) -> str:
    """A tool step's function: the draft a checkpoint waits on."""
    return "A draft that nobody reads in time."
