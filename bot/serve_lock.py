"""SQLite serves from one process: a second `overseer serve` on the same file says so and stops."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from agents.errors import ConfigError


@contextmanager
def single_sqlite_server(database_url: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite database for as long as this server runs.

    The lock is the kernel's (flock): it goes with the process, even on SIGKILL, so a crash never
    leaves a stale lock behind. PostgreSQL needs none: replicas coordinate through row leases.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    lock_path = Path(url.database).resolve().with_name(Path(url.database).name + ".serve-lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another `overseer serve` already uses {url.database}: SQLite serves from one process; "
                "set DATABASE_URL=postgresql://… to run several replicas"
            ) from None
        yield
    finally:
        os.close(fd)
