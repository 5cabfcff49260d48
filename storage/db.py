"""The async engine and session factory for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

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


@dataclass(frozen=True)
class Database:
    """An engine and its session factory; pass `db` down, open sessions at the edges."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def dispose(self) -> None:
        """Close every pooled connection."""
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
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()



def connect(url: str, *, echo: bool = False) -> Database:
    """Create the engine for a database URL; SQLite files get WAL mode and immediate write transactions."""
    full = async_url(url)
    kwargs: dict = {"echo": echo}
    if full.startswith("postgresql"):
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    engine = create_async_engine(full, **kwargs)
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine)
    return Database(engine=engine, sessions=async_sessionmaker(engine, expire_on_commit=False))


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
