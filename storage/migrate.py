"""Run Alembic migrations programmatically, on the caller's async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from storage.db import Database

# Found by path, not imported: storage is the lowest layer. The folder ships beside this package
# (pyproject's packages include migrations*), so this holds in a checkout, a wheel and the image.
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# Any fixed number: replicas starting together take this PostgreSQL advisory lock in turn.
_MIGRATION_LOCK = 0x0F5EE7


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config pointing at the packaged migrations folder."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def _upgrade(connection, cfg: Config) -> None:  # type: ignore[no-untyped-def]
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def upgrade(db: Database) -> None:
    """Apply every pending migration; safe to call from several processes at once."""
    cfg = alembic_config()
    async with db.engine.connect() as conn:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            await conn.commit()
        try:
            await conn.run_sync(_upgrade, cfg)
            await conn.commit()
        finally:
            if not db.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                await conn.commit()


async def current_revision(db: Database) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    def _rev(connection) -> str | None:  # type: ignore[no-untyped-def]
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(_rev)
