"""The async engine and session factory for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.pg_loop import LoopWorker, Reads, fuse, run_once_more_if_dropped
from storage.writer import SqliteWorker, run_prepared, tune

T = TypeVar("T")

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """Turn a plain database URL (sqlite:///x.db, postgresql://...) into its async-driver form."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    if "+" in parsed.drivername and parsed.drivername in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        return parsed.render_as_string(hide_password=False)
    return parsed.set(drivername=_ASYNC_DRIVERS[backend]).render_as_string(hide_password=False)


class _GuardFailed(Exception):
    """A guarded write changed no row: the transaction rolls back."""


class Gate:
    """At most `size` transactions of write/read at once (per event loop), so none waits on the pool's
    checkout timeout: a transaction waits its turn here, for as long as it takes, never failing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._held: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._held is None or self._held[0] is not loop:
            self._held = (loop, asyncio.Semaphore(self.size))
        return self._held[1]


@dataclass(frozen=True)
class Database:
    """An engine and its session factory; pass `db` down, open sessions at the edges.

    `write` and `read` run a plain function of a SQLAlchemy Connection in one transaction: on a SQLite
    file on the writer (or reader) thread, on PostgreSQL on a loop thread of its own (storage.writer),
    for an in-memory SQLite through this engine. The hot path uses them; the sessions serve the rest."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    writer: SqliteWorker | LoopWorker | None = None
    reader: SqliteWorker | Reads | None = None
    gate: Gate = field(default_factory=lambda: Gate(10))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` in one write transaction: committed when it returns, rolled back when it
        raises. Finished by the database's own thread even if the awaiting task is cancelled."""
        if self.writer is not None:
            return await self.writer.run(fn)
        return await self._through_engine(fn, begin=True)

    async def commit(self, writes: Sequence[Write]) -> bool:
        """Run writes in a transaction of their own: False (nothing kept) when a guard failed."""
        def body(conn: Connection) -> bool:
            if not run_writes_sync(conn, writes):
                raise _GuardFailed
            return True

        try:
            return await self.write(body)
        except _GuardFailed:
            return False

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` on a read connection (one snapshot on SQLite): what it returns."""
        if self.reader is not None:
            return await self.reader.run(fn)
        return await self._through_engine(fn, begin=False)

    async def _through_engine(self, fn: Callable[[Connection], T], *, begin: bool) -> T:
        async with self.gate.semaphore():
            return await run_once_more_if_dropped(self.engine, fn, begin=begin)

    async def dispose(self) -> None:
        """Close every pooled connection and end the database threads."""
        for worker in (self.writer, self.reader):
            if worker is not None:
                await worker.close()
        await self.engine.dispose()


def unreachable(exc: BaseException) -> bool:
    """Whether `exc`, raised by a database call, says the database cannot be reached or used right now.

    asyncpg lets a refused or dropped connection through as a bare OSError (or a timeout), SQLite and
    SQLAlchemy raise OperationalError and friends; a query's own mistake is none of these.
    """
    return isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, OSError, TimeoutError))


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # The sqlite3 module itself issues BEGIN IMMEDIATE right before a transaction's first
        # INSERT/UPDATE/DELETE, in the same call: a writer takes the write lock up front (waiting its
        # turn under busy_timeout) and never hits the deferred-upgrade "database is locked" failure.
        # Trade-off: statements before the first write run outside a transaction, each on the latest
        # commit, and DDL autocommits. That is PostgreSQL's READ COMMITTED, which every query is
        # already written for (writes are guarded: conditional UPDATEs, once-only INSERTs); in return
        # read-only sessions (the digest, status pages) take no lock and no transaction costs an
        # extra BEGIN round trip.
        dbapi_conn.isolation_level = "IMMEDIATE"
        tune(dbapi_conn)


def connect(url: str, *, echo: bool = False, pool_size: int = 10) -> Database:
    """Create the engine for a database URL; SQLite files get WAL mode, immediate write transactions and
    a writer thread. PostgreSQL: no pre-ping per checkout (Database.write reconnects instead)."""
    full = async_url(url)
    kwargs: dict = {"echo": echo}
    if full.startswith("postgresql"):
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    engine = create_async_engine(full, **kwargs)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    # write/read take at most pool_size connections: the other half of the pool stays for the sessions.
    gate = Gate(pool_size)
    if engine.dialect.name != "sqlite":
        worker = LoopWorker(full, size=pool_size, name="overseer-postgresql-loop")
        return Database(engine=engine, sessions=sessions, writer=worker, reader=Reads(worker), gate=gate)
    _tune_sqlite(engine)
    database = make_url(full).database
    if not database or database == ":memory:":
        return Database(engine=engine, sessions=sessions, gate=gate)  # one memory database per connection
    writer = SqliteWorker(full, name="overseer-sqlite-writer", begin="BEGIN IMMEDIATE")
    reader = SqliteWorker(full, name="overseer-sqlite-reader", begin="BEGIN")
    return Database(engine=engine, sessions=sessions, writer=writer, reader=reader, gate=gate)


# --- a transaction's writes, in order, with guards ---------------------------------------------

Write = tuple[Any, Any, bool]  # (statement, params or a list of params, guard: stop unless 1 row)


async def run_writes(session: AsyncSession, writes: Sequence[Write]) -> bool:
    """Run Core INSERT/UPDATE statements in the session's transaction, in order; False (the rest not
    run) as soon as a guarded one changes no row. The caller then raises, rolling the transaction back."""
    conn = await session.connection()
    for stmt, params, guard in writes:
        result = await conn.execute(stmt, params)
        if guard and result.rowcount != 1:
            return False
    return True


def run_writes_sync(conn: Connection, writes: Sequence[Write]) -> bool:
    """run_writes on a plain Connection (inside Database.write). Prepared statements go straight to the
    DB-API cursor; on PostgreSQL a run of them goes as one statement (storage.writer.fuse)."""
    fused = fuse(conn.dialect, writes) if conn.dialect.driver == "asyncpg" else None
    if fused is not None:
        sql, args = fused
        changed = conn.exec_driver_sql(sql, tuple(args)).scalar()
        return not writes[0][2] or changed == 1
    for stmt, params, guard in writes:
        count = run_prepared(conn, stmt, params)
        if count is None:
            count = conn.execute(stmt, params).rowcount
        if guard and count != 1:
            return False
    return True
