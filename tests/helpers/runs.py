"""Reading what a run left in the database, each lookup in its own session.

Every function takes the database or anything holding one as `.db` (an Engine, a Bot).
"""

from __future__ import annotations

from typing import Any

from storage import outbox_queries, run_queries
from storage.db import Database
from storage.models import Attempt, OutboxMessage, Run, StepRun


def database(holder: Any) -> Database:
    """The Database itself, or the one an Engine or a Bot holds."""
    return holder if isinstance(holder, Database) else holder.db


async def all_runs(holder: Any, limit: int = 1000) -> list[Run]:
    """Every run, newest first."""
    async with database(holder).sessions() as session:
        return list(await run_queries.list_runs(session=session, limit=limit))


async def only_run(holder: Any) -> Run:
    """The one run there is; fails if there are none or several."""
    runs = await all_runs(holder)
    assert len(runs) == 1, runs
    return runs[0]


async def get_run(holder: Any, run_id: str) -> Run | None:
    """One run by id."""
    async with database(holder).sessions() as session:
        return await run_queries.get_run(session=session, run_id=run_id)


async def steps_of(holder: Any, run_id: str) -> list[StepRun]:
    """A run's steps, in spec order."""
    async with database(holder).sessions() as session:
        return list(await run_queries.step_runs(session=session, run_id=run_id))


async def attempts_of(holder: Any, run_id: str, step: str | None = None) -> list[Attempt]:
    """A run's attempts (of one step if given), in order."""
    async with database(holder).sessions() as session:
        return list(await run_queries.attempts(session=session, run_id=run_id, step=step))


async def outbox_of(holder: Any, run_id: str | None = None) -> list[OutboxMessage]:
    """The outbox (a run's messages if given), oldest first."""
    async with database(holder).sessions() as session:
        return list(await outbox_queries.outbox_since(session=session, after_id=0, run_id=run_id))


async def outbox_kinds(holder: Any, run_id: str) -> list[str]:
    """The kinds of a run's outbox messages, oldest first."""
    return [m.kind for m in await outbox_of(holder, run_id)]
