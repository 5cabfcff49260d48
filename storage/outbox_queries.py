"""The outbox table: announcements in order per stream, claimed by one deliverer at a time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Write
from storage.models import OutboxMessage, Run, utcnow
from storage.writer import prepared


_INSERT_OUTBOX = prepared(insert(OutboxMessage.__table__))


def outbox_write(messages: Sequence[tuple[str | None, str, dict[str, Any], str | None]]) -> Write:
    """Insert (run_id, kind, payload, stream) announcements in this order; a run's messages form one
    ordered stream (stream None: the run's, or the kind's for messages of no run). agents.outbox is the
    only caller: it types every payload."""
    now = utcnow()
    rows = [
        {"run_id": run_id, "stream": stream or run_id or kind, "kind": kind, "payload": payload, "created_at": now}
        for run_id, kind, payload, stream in messages
    ]
    return (_INSERT_OUTBOX, rows, False)


async def pending_outbox(*, session: AsyncSession, now: datetime, limit: int = 50) -> Sequence[OutboxMessage]:
    """The oldest undelivered message of each stream (order per run), due and not claimed by a live peer."""
    head = select(func.min(OutboxMessage.id)).where(OutboxMessage.delivered_at.is_(None)).group_by(OutboxMessage.stream)
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.id.in_(head),
            or_(OutboxMessage.next_try_at.is_(None), OutboxMessage.next_try_at <= now),
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def claim_outbox_many(
    *, session: AsyncSession, message_ids: Sequence[int], owner: str, now: datetime, hold_s: float
) -> set[int]:
    """Claim messages for delivery so no other replica posts them too, in one statement (a tick takes
    the write lock once); the ids won."""
    if not message_ids:
        return set()
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(list(message_ids)),
            OutboxMessage.delivered_at.is_(None),
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now, OutboxMessage.claimed_by == owner),
        )
        .values(claimed_by=owner, claimed_until=now + timedelta(seconds=hold_s))
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    return {row[0] for row in result.all()}


async def run_channels(*, session: AsyncSession, run_ids: Iterable[str | None]) -> dict[str, str | None]:
    """The channel each run announces in, by run id (ids of no run are skipped)."""
    ids = [r for r in run_ids if r]
    if not ids:
        return {}
    rows = await session.execute(select(Run.id, Run.channel).where(Run.id.in_(ids)))
    return {run_id: channel for run_id, channel in rows.all()}


async def outbox_since(*, session: AsyncSession, after_id: int, run_id: str | None = None) -> Sequence[OutboxMessage]:
    """Messages newer than after_id (the CLI prints these as they come)."""
    query = select(OutboxMessage).where(OutboxMessage.id > after_id)
    if run_id is not None:
        query = query.where(OutboxMessage.run_id == run_id)
    return (await session.scalars(query.order_by(OutboxMessage.id))).all()


async def mark_outbox_done(*, session: AsyncSession, message_ids: Sequence[int], now: datetime) -> None:
    """Mark messages delivered (the CLI, which prints rather than posts, calls this too)."""
    if message_ids:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(list(message_ids)))
            .values(delivered_at=now, claimed_by=None, claimed_until=None)
        )


async def outbox_followers(*, session: AsyncSession, stream: str, after_id: int, limit: int = 50) -> Sequence[OutboxMessage]:
    """The undelivered messages that follow `after_id` in one stream, in order."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.stream == stream, OutboxMessage.id > after_id, OutboxMessage.delivered_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def retry_outbox_later(
    *, session: AsyncSession, message_id: int, owner: str, next_try_at: datetime, error: str
) -> None:
    """A delivery failed for a passing reason: count the try, note why, release the claim until next_try_at."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == owner)
        .values(tries=OutboxMessage.tries + 1, last_error=error[:2000], next_try_at=next_try_at, claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


async def release_outbox(*, session: AsyncSession, message_id: int, owner: str, now: datetime) -> None:
    """Give a claimed message back (a clean shutdown mid-delivery): its claim ends now, and claimed_until
    stays set, so its next delivery knows this one may have posted before it stopped."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == owner, OutboxMessage.delivered_at.is_(None))
        .values(claimed_by=None, claimed_until=now)
        .execution_options(synchronize_session=False)
    )


async def retry_outbox_now(*, session: AsyncSession, now: datetime) -> int:
    """Make every undelivered message that waits for a later try due now (Slack is back); how many."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.next_try_at > now)
        .values(next_try_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


async def finish_outbox(*, session: AsyncSession, message_id: int, now: datetime, error: str | None = None) -> None:
    """Delivered (or given up for good): counts the try and keeps the error, if any, in last_error."""
    values: dict[str, Any] = {"delivered_at": now, "claimed_by": None, "claimed_until": None, "tries": OutboxMessage.tries + 1}
    if error is not None:
        values["last_error"] = error[:2000]
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values).execution_options(synchronize_session=False)
    )
