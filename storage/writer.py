"""SQLite's transactions on threads of their own: one writer thread owns the one write connection.

A transaction is a plain function of a SQLAlchemy `Connection`, run whole on the thread: one hand-off
from the event loop to the thread and one back, however many statements it makes. SQLite has one
writer at a time anyway; queueing them here costs no parallelism and saves the per-statement thread
hops of aiosqlite. And it makes a transaction independent of the coroutine that asked for it: an
awaiting task that is cancelled never leaves the write lock held. The thread finishes (commits, or
rolls back on an error) what it began; a job cancelled before it began is skipped.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

T = TypeVar("T")
Job = tuple[Callable[[Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def tune(dbapi_conn: Any, *, busy_ms: int = 30000) -> None:
    """The pragmas every connection to an Overseer SQLite file sets."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class SqliteWorker:
    """One thread, one connection: runs transactions in the order they are asked for."""

    def __init__(self, url: str, *, name: str, begin: str) -> None:
        self.name = name
        parsed = make_url(url).set(drivername="sqlite+pysqlite")
        # NullPool: the thread holds its one connection for its life, nothing is pooled behind it.
        self._engine = create_engine(parsed, poolclass=NullPool)
        self._begin = begin  # "BEGIN IMMEDIATE" for the writer (the lock up front), "BEGIN" for a reader

        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # the module issues no BEGIN of its own: we do, below
            tune(dbapi_conn)

        @event.listens_for(self._engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.connection.driver_connection.execute(self._begin)  # straight to sqlite3: no statement overhead

        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` in one transaction on the thread; its result, or its exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ensure_started()
        self._queue.put((fn, future, loop))
        return await future

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        conn: Connection | None = None
        try:
            while (job := self._queue.get()) is not None:
                fn, future, loop = job
                if future.cancelled():
                    continue  # nobody waits for it and nothing of it ran: skip it
                try:
                    if conn is None or conn.invalidated or conn.closed:
                        conn = self._engine.connect()
                    with conn.begin():
                        result = fn(conn)
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                    conn = _discard_if_broken(conn)
                    _settle(loop, future, None, exc)
                else:
                    _settle(loop, future, result, None)
        finally:
            if conn is not None:
                conn.close()

    async def close(self) -> None:
        """Finish the queued transactions, close the connection and end the thread."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 60)
        self._engine.dispose()


def _discard_if_broken(conn: Connection | None) -> Connection | None:
    """Keep a connection that merely ran a failed transaction; drop one that is unusable now."""
    if conn is None:
        return None
    if conn.invalidated or conn.in_transaction():
        conn.close()
        return None
    return conn


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    def resolve() -> None:
        if future.done():
            return  # the task that asked was cancelled meanwhile: the transaction ran all the same
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(resolve)
    except RuntimeError:
        pass  # the loop is closed: nobody is left to tell


# --- the hot path's statements, compiled once for pysqlite ----------------------------------------
# SQLAlchemy spends ~80 µs per execution (a cache key, an execution context, a result) around SQLite's
# own ~15 µs and asyncpg's ~25 µs round trip. The driver's few statements are built once at import
# (storage.driver_queries, storage.outbox_queries) and registered here: their SQL, parameter order and
# type processing are taken from SQLAlchemy's own compiler once, then run on the DB-API cursor.

_PREPARED: set[int] = set()
_COMPILED: dict[tuple[int, tuple[str, ...]], Any] = {}


def prepared(stmt: T) -> T:
    """Mark a statement built once at import as one the writer thread may run without SQLAlchemy's
    per-execution machinery (INSERT or UPDATE with plain bind parameters, no RETURNING)."""
    _PREPARED.add(id(stmt))
    return stmt


class _Compiled:
    __slots__ = ("sql", "compiled", "order", "processors", "defaults")

    def __init__(self, stmt: Any, dialect: Any, keys: tuple[str, ...]) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
        self.sql = compiled.string
        self.compiled = compiled
        self.order = tuple(compiled.positiontup)
        self.processors = dict(compiled._bind_processors)
        defaults = []
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
            default = column.default if column in compiled.insert_prefetch else column.onupdate
            if default is None or not (default.is_scalar or default.is_callable):
                raise LookupError(column.key)
            defaults.append((column.key, default))
        self.defaults = tuple(defaults)

    def values(self, params: dict[str, Any]) -> list[Any]:
        bound = self.compiled.construct_params(params, _check=False)
        for key, default in self.defaults:
            if key not in params:
                bound[key] = default.arg(None) if default.is_callable else default.arg
        processors = self.processors
        out = []
        for name in self.order:
            value = bound[name]
            processor = processors.get(name)
            out.append(processor(value) if processor is not None else value)
        return out


_FAST_DRIVERS = ("pysqlite", "asyncpg")


def is_prepared(stmt: Any) -> bool:
    """Whether `stmt` was marked with `prepared`."""
    return id(stmt) in _PREPARED


def compiled_for(stmt: Any, dialect: Any, keys: tuple[str, ...]) -> _Compiled | None:
    """A prepared statement compiled for `dialect` and these parameter names (once), or None when it
    cannot be run that way (it then goes through SQLAlchemy)."""
    key = (id(stmt), dialect.driver, keys)
    compiled = _COMPILED.get(key)
    if compiled is None:
        try:
            compiled = _COMPILED[key] = _Compiled(stmt, dialect, keys)
        except LookupError:
            _PREPARED.discard(id(stmt))
            return None
    return compiled


def run_prepared(conn: Connection, stmt: Any, params: Any) -> int | None:
    """Run a prepared statement on the DB-API cursor itself (pysqlite; asyncpg through SQLAlchemy's
    adapter, which keeps the transaction and error translation): its rowcount, or None when it is not
    one (the caller then executes it through SQLAlchemy)."""
    if id(stmt) not in _PREPARED or conn.dialect.driver not in _FAST_DRIVERS:
        return None
    rows = params if isinstance(params, list) else None
    first = rows[0] if rows else params
    if rows is not None and not rows:
        return 0
    compiled = compiled_for(stmt, conn.dialect, tuple(first))
    if compiled is None:
        return None
    dbapi_conn = conn.connection.dbapi_connection
    cursor = dbapi_conn.cursor()
    try:
        if rows is None:
            cursor.execute(compiled.sql, compiled.values(first))
        else:
            cursor.executemany(compiled.sql, [compiled.values(r) for r in rows])
        count = cursor.rowcount
    except conn.dialect.loaded_dbapi.Error as exc:
        # The same exception SQLAlchemy would raise (OperationalError, IntegrityError, ...), and a
        # connection the server dropped is invalidated, as SQLAlchemy does.
        gone = conn.dialect.is_disconnect(exc, dbapi_conn, cursor)
        if gone:
            conn.invalidate(exc)
        raise DBAPIError.instance(compiled.sql, None, exc, conn.dialect.loaded_dbapi.Error,
                                  connection_invalidated=gone, dialect=conn.dialect) from exc
    finally:
        cursor.close()
    sent = conn.info.get("overseer.sent")
    if sent is not None:
        sent["sent"] = True
    return count
