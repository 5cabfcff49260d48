"""Shared fixtures: databases (SQLite always, PostgreSQL when configured), the fakes (model, Slack, a web page), the engine."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

# litellm fetches its price list from the internet on import unless told not to.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("OPENAI_API_KEY", "sk-fake")
os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-fake")

import pytest
from sqlalchemy.engine import make_url

from agents.engine import Engine, EngineSettings
from storage.db import Database, connect
from storage.migrate import upgrade
from storage.models import Base
from tests.fakes.fake_model import FakeModel
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.web_page import WebPage

PG_URL = os.environ.get("OVERSEER_TEST_DATABASE_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="OVERSEER_TEST_DATABASE_URL is not set")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _migrate(url: str) -> None:
    db = connect(url)
    await upgrade(db)
    await db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test: migrate once, isolate each test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    _run(_migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A throwaway PostgreSQL database for this test session, migrated once."""
    if not PG_URL:
        yield None
        return
    import asyncpg

    base = make_url(PG_URL)
    name = f"overseer_test_{secrets.token_hex(4)}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run(admin(f'CREATE DATABASE "{name}"'))
    url = base.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    _run(_migrate(url))
    yield url
    _run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_database: str | None) -> str:
    """A freshly migrated, empty database URL on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "overseer.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    assert pg_database is not None

    async def truncate() -> None:
        db = connect(pg_database)
        async with db.engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            from sqlalchemy import text

            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await db.dispose()

    _run(truncate())
    return pg_database


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """An open Database on a fresh, migrated database."""
    database = connect(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The process's structured logs, as JSON lines in a string; structlog's defaults come back after."""
    import structlog

    from bot.logs import configure_logging

    stream = io.StringIO()
    configure_logging(fmt="json", level="info", stream=stream)
    yield stream
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _redaction_restored() -> Iterator[None]:
    """A test that installs the process's redactor (serve, the CLI in-process) leaves none behind."""
    from bot import redaction

    previous = redaction.current()
    yield
    redaction.use(previous)


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    """A fake OpenAI-compatible model server on loopback."""
    with FakeModel() as fake:
        yield fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API server on loopback."""
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def page() -> Iterator[WebPage]:
    """A local web page for fetch_page, counting the paths asked for."""
    with WebPage() as server:
        yield server


@pytest.fixture
def engine_settings() -> EngineSettings:
    """Tiny backoff delays and a short lease, set through configuration rather than patching."""
    return EngineSettings(owner="test-owner", lease_seconds=5.0, delay_scale=0.001, secrets={"FAKE_KEY": "sk-fake"})


@pytest.fixture
def engine(db: Database, engine_settings: EngineSettings) -> Engine:
    """An engine on the test database."""
    return Engine(db, settings=engine_settings)
