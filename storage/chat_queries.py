"""The chat side's own rows: which message was posted for (run, key)."""

from __future__ import annotations


from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatMessage, Run, utcnow


async def get_chat_message(*, session: AsyncSession, run_id: str | None, key: str) -> ChatMessage | None:
    """A message the chat side posted for a run, by key ("parent", "checkpoint:<step>", ...)."""
    return await session.scalar(select(ChatMessage).where(ChatMessage.run_id == run_id, ChatMessage.key == key))


async def put_chat_message(
    *, session: AsyncSession, run_id: str | None, key: str, channel: str, ts: str, outbox_id: int | None = None
) -> None:
    """Remember (or move) the message posted for (run, key), and the announcement it was posted for."""
    found = await get_chat_message(session=session, run_id=run_id, key=key)
    if found is None:
        session.add(ChatMessage(run_id=run_id, key=key, channel=channel, ts=ts, created_at=utcnow(), outbox_id=outbox_id))
    else:
        found.channel, found.ts = channel, ts


async def latest_chat_message(*, session: AsyncSession, run_id: str, prefix: str) -> ChatMessage | None:
    """The newest message of a run whose key starts with `prefix` (e.g. its last failure report)."""
    return await session.scalar(
        select(ChatMessage)
        .where(ChatMessage.run_id == run_id, ChatMessage.key.startswith(prefix, autoescape=True))
        .order_by(ChatMessage.id.desc())
        .limit(1)
    )


async def set_run_message(*, session: AsyncSession, run_id: str, channel: str, ts: str) -> None:
    """Record where a run's parent message lives."""
    await session.execute(
        update(Run).where(Run.id == run_id).values(channel=channel, message_ts=ts).execution_options(synchronize_session=False)
    )
