"""Once-only keys (a schedule tick, a digest): whoever inserts one first owns it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Write, run_writes
from storage.models import Claim, utcnow


# PostgreSQL's INSERT ... ON CONFLICT DO NOTHING compiles to the same SQL on SQLite.
_CLAIM_ONCE = pg_insert(Claim.__table__).on_conflict_do_nothing()


def claim_write(*, key: str, owner: str, at: datetime | None = None) -> Write:
    """Insert a once-only key (guarded: only the first caller ever inserts a row)."""
    return (_CLAIM_ONCE, {"key": key, "owner": owner, "at": at or utcnow()}, True)


async def try_claim(*, session: AsyncSession, key: str, owner: str) -> bool:
    """Insert a once-only key; True if this caller is the first ever to do so."""
    return await run_writes(session, [claim_write(key=key, owner=owner)])


async def last_claim_key(*, session: AsyncSession, prefix: str) -> str | None:
    """The greatest claim key starting with `prefix` (a range scan on the primary key), or None."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return await session.scalar(select(func.max(Claim.key)).where(Claim.key >= prefix, Claim.key < upper))


async def claim_exists(*, session: AsyncSession, key: str) -> bool:
    """True when someone already holds this once-only key."""
    return await session.get(Claim, key) is not None


async def first_claim_at(*, session: AsyncSession, key: str, owner: str, at: datetime) -> datetime:
    """The time held by a once-only key, inserting it with `at` if nobody holds it yet."""
    held = await session.scalar(select(Claim.at).where(Claim.key == key))
    if held is None:
        # Several replicas may get here at once: the first insert wins and all read its time back.
        await run_writes(session, [claim_write(key=key, owner=owner, at=at)])
        held = await session.scalar(select(Claim.at).where(Claim.key == key))
    assert held is not None
    return held
