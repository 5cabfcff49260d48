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


@pytest.mark.postgres
async def test_after_postgresql_drops_every_connection_the_next_write_reconnects_once_without_a_pre_ping(
    pg_database: str,
) -> None:
    """No pre-ping per checkout: a pooled connection the server dropped (a restart) is retried once, on
    a new connection, when nothing of the transaction had reached the server."""
    import asyncpg
    from sqlalchemy.engine import make_url

    db = connect(pg_database)
    try:
        assert await db.write(lambda conn: conn.execute(text("SELECT 1")).scalar()) == 1  # a pooled connection
        admin = await asyncpg.connect(make_url(pg_database).set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert await db.write(lambda conn: conn.execute(text("SELECT 2")).scalar()) == 2
        assert await db.read(lambda conn: conn.execute(select(Run.id)).all()) is not None
    finally:
        await db.dispose()


async def test_a_write_whose_task_is_cancelled_still_ends_its_transaction(sqlite_db: Database, tmp_path: Path) -> None:
    """The writer thread finishes what it began: a cancelled caller leaves no write lock held."""
    import asyncio
    import time

    def slow(conn) -> None:  # type: ignore[no-untyped-def]
        conn.execute(text("INSERT INTO claims (key, owner, at) VALUES ('slow', 'o', '2024-01-01')"))
        time.sleep(0.3)

    task = asyncio.create_task(sqlite_db.write(slow))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    other = sqlite3.connect(tmp_path / "db.sqlite", timeout=2)
    try:  # the lock is free at once (busy_timeout would have made this wait 30 s)
        other.execute("INSERT INTO claims (key, owner, at) VALUES ('next', 'o', '2024-01-01')")
        other.commit()
        assert {k for (k,) in other.execute("SELECT key FROM claims")} == {"slow", "next"}
    finally:
        other.close()
