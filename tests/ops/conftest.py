"""Fixtures for the operations tests: more than one replica on one database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage.db import Database, connect


@pytest.fixture
async def two_databases(db_url: str) -> AsyncIterator[tuple[Database, Database]]:
    """Two connection pools on one fresh database, as two replicas would hold."""
    first, second = connect(db_url), connect(db_url)
    yield first, second
    await first.dispose()
    await second.dispose()
