"""SQLite plumbing: reads take no lock, writes begin an immediate transaction; guarded writes stop and roll back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, text

from storage.db import Database, connect, run_writes
from storage.migrate import upgrade
from storage.models import Run, utcnow
from storage import driver_queries, outbox_queries, run_queries


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> Database:
    db = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await upgrade(db)
    yield db  # type: ignore[misc]
    await db.dispose()


async def test_reads_take_no_lock_and_writes_begin_immediately(sqlite_db: Database, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "db.sqlite", timeout=0)
    try:
        async with sqlite_db.sessions() as session:
            await session.execute(select(Run.id))
            other.execute("INSERT INTO claims (key, owner, at) VALUES ('k', 'o', '2024-01-01')")  # not blocked
            other.commit()
            await session.execute(text("UPDATE claims SET owner = 'x'"))  # BEGIN IMMEDIATE came with it
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("INSERT INTO claims (key, owner, at) VALUES ('k2', 'o', '2024-01-01')")
            await session.rollback()
    finally:
        other.close()


async def test_run_writes_stops_at_a_failed_guard_and_the_rollback_undoes_it(sqlite_db: Database) -> None:
    now = utcnow()
    values = {"id": "r1", "workflow": "w", "inputs": {}, "spec": {}, "started_by": "t", "trigger": "cli",
              "status": "queued", "channel": None, "created_at": now, "updated_at": now}
    async with sqlite_db.sessions.begin() as session:
        assert await run_writes(session, driver_queries.new_run_writes(values, ["a", "b"]))
    async with sqlite_db.sessions() as session:
        fence = driver_queries.fence_step_write(run_id="r1", owner="nobody", now=now, step="a")
        message = outbox_queries.outbox_write([("r1", "step_started", {"step": "a"}, None)])
        assert not await run_writes(session, [message, fence, message])
        await session.rollback()
    async with sqlite_db.sessions() as session:
        assert await outbox_queries.outbox_since(session=session, after_id=0) == []
        run = await run_queries.get_run(session=session, run_id="r1")
        assert run is not None and (run.tokens_in, run.cost_usd, run.status) == (0, 0.0, "queued")  # defaults applied
        assert [s.step for s in await run_queries.step_runs(session=session, run_id="r1")] == ["a", "b"]
        # Columns left out stay SQL NULL (not JSON 'null'), as an ORM insert leaves them.
        nulls = "SELECT count(*) FROM step_runs WHERE input IS NULL AND output IS NULL AND input_override IS NULL"
        assert (await session.execute(text(nulls))).scalar() == 2
