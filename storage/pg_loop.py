"""PostgreSQL's hot path: transactions on an event loop of their own, their writes as one statement."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, event
from sqlalchemy.exc import DBAPIError

from storage.writer import compiled_for, is_prepared

T = TypeVar("T")


class LoopWorker:
    """PostgreSQL's hot-path transactions on an asyncio loop in a thread of its own, over its own small
    asyncpg pool. A transaction's round trips then never wait behind the main loop's work (litellm's
    callbacks, Slack requests): the main loop hands a transaction over once and is told once. Like the
    SQLite writer, it finishes what it began when the awaiting task is cancelled. At most `size`
    transactions at once: more wait their turn here, never on the pool's checkout timeout."""

    def __init__(self, url: str, *, size: int, name: str) -> None:
        self._url, self._size, self.name = url, size, name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: Any = None
        self._gate: asyncio.Semaphore | None = None
        self._lock = threading.Lock()

    async def run(self, fn: Callable[[Connection], T], *, begin: bool = True) -> T:
        """Run `fn(connection)` in one transaction (begin) or on one connection (a read): its result."""
        loop = self._ensure_started()
        done = asyncio.run_coroutine_threadsafe(self._transaction(fn, begin), loop)
        future = asyncio.wrap_future(done)
        future.add_done_callback(_retrieve)  # the caller may be gone (cancelled) by the time it ends
        return await asyncio.shield(future)

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                ready = threading.Event()
                self._thread = threading.Thread(target=self._serve, args=(ready,), name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
        assert self._loop is not None
        return self._loop

    def _serve(self, ready: threading.Event) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._engine = create_async_engine(self._url, pool_size=self._size, max_overflow=0)
        event.listen(self._engine.sync_engine, "after_cursor_execute", mark_sent)
        self._gate = asyncio.Semaphore(self._size)
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
            loop.run_until_complete(self._engine.dispose())
        finally:
            loop.close()

    async def _transaction(self, fn: Callable[[Connection], T], begin: bool) -> T:
        assert self._gate is not None
        async with self._gate:
            return await run_once_more_if_dropped(self._engine, fn, begin=begin)

    async def close(self) -> None:
        """Let the transactions under way end, close the pool and end the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 60)


class Reads:
    """A LoopWorker's reads: `run` on a connection of its pool, no write transaction."""

    def __init__(self, worker: LoopWorker) -> None:
        self.worker = worker

    async def run(self, fn: Callable[[Connection], T]) -> T:
        return await self.worker.run(fn, begin=False)

    async def close(self) -> None:
        await self.worker.close()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def run_once_more_if_dropped(engine: Any, fn: Callable[[Connection], T], *, begin: bool) -> T:
    """`fn` in a transaction (or a plain connection) of `engine`, run once more if its connection had been
    dropped before anything of it reached the server."""
    for again in (True, False):
        sent: dict[str, bool] = {}
        try:
            async with engine.begin() if begin else engine.connect() as conn:
                return await conn.run_sync(tracked(fn, sent))
        except DBAPIError as exc:
            # No pre-ping per checkout: a connection the server dropped (a restart) shows at its first
            # statement. SQLAlchemy then recycles the whole pool; run it once more, only when nothing of
            # the transaction reached the server.
            if not (again and exc.connection_invalidated and not sent.get("sent")):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def tracked(fn: Callable[[Connection], T], sent: dict[str, bool]) -> Callable[[Connection], T]:
    """`fn`, noting in `sent` whether any of its statements completed (see mark_sent)."""
    def call(conn: Connection) -> T:
        conn.info["overseer.sent"] = sent
        return fn(conn)
    return call


def mark_sent(conn: Connection, *_args: Any) -> None:
    """after_cursor_execute: a statement of the transaction reached the server and came back."""
    sent = conn.info.get("overseer.sent")
    if sent is not None:
        sent["sent"] = True


# --- PostgreSQL: a transaction's writes as one statement --------------------------------------------

_PLACEHOLDER = re.compile(r"\$(\d+)")


def fuse(dialect: Any, writes: Sequence[Any]) -> tuple[str, list[Any]] | None:
    """The writes of one transaction (prepared statements; a guard on the first alone) as one PostgreSQL
    statement of data-modifying CTEs: one round trip instead of one per statement. With a guard, every
    other write is conditional on the first having changed its row; the statement returns how many it
    changed. None when the writes do not fit (the caller runs them one by one)."""
    if not writes or any(g for _s, _p, g in writes[1:]) or not all(is_prepared(s) for s, _p, _g in writes):
        return None
    guarded = bool(writes[0][2])
    parts: list[str] = []
    args: list[Any] = []
    for index, (stmt, params, _guard) in enumerate(writes):
        rows = params if isinstance(params, list) else [params]
        if not rows:
            continue
        compiled = compiled_for(stmt, dialect, tuple(rows[0]))
        if compiled is None:
            return None
        condition = guarded and index > 0
        sql = compiled.sql
        if sql.startswith("INSERT"):
            head, _, rest = sql.partition(" VALUES (")
            values = rest.rsplit(") RETURNING ", 1)[0] if ") RETURNING " in rest else rest[:-1]
            selects = []
            for row in rows:
                selects.append(f"SELECT {_shift(values, len(args))}" + (" WHERE EXISTS (SELECT 1 FROM w0)" if condition else ""))
                args += compiled.values(row)
            body = f"{head} {' UNION ALL '.join(selects)}"
        elif sql.startswith("UPDATE") and len(rows) == 1 and " RETURNING " not in sql:
            body = _shift(sql, len(args))
            if condition:
                body = body.replace(" WHERE ", " WHERE (", 1) + ") AND EXISTS (SELECT 1 FROM w0)"
            args += compiled.values(rows[0])
        else:
            return None
        if index == 0 and guarded:
            body += " RETURNING 1"
        parts.append(f"w{index} AS ({body})")
    if not parts:
        return None
    return f"WITH {', '.join(parts)} SELECT {'count(*) FROM w0' if guarded else '1'}", args


def _shift(sql: str, offset: int) -> str:
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + offset}", sql) if offset else sql
