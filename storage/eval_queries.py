"""What an eval reads: the checkpoints people approved or edited, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Decision, Run
from storage.status import Action


async def decided_checkpoints(
    *, session: AsyncSession, workflow: str, limit: int
) -> Sequence[tuple[Decision, Run]]:
    """The last `limit` approve/edit decisions of a workflow's runs, newest first, with their runs."""
    rows = await session.execute(
        select(Decision, Run)
        .join(Run, Run.id == Decision.run_id)
        .where(Run.workflow == workflow, Decision.action.in_([Action.APPROVE, Action.EDIT]))
        .order_by(Decision.decided_at.desc(), Decision.id.desc())
        .limit(limit)
    )
    return [(d, r) for d, r in rows.all()]
