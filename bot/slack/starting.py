"""Starting a run from Slack: the one path the slash command and the run form share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from agents import outbox
from agents.errors import DatabaseUnavailable
from agents.inputs import coerce_inputs, missing_required
from bot.slack import blocks as bk
from bot.slack.permissions import require_starter
from storage.db import run_writes, unreachable

if TYPE_CHECKING:
    from agents.spec import WorkflowSpec
    from bot.slack import BotContext

log = structlog.get_logger("overseer.slack.starting")


async def start_run(
    ctx: BotContext, spec: WorkflowSpec, raw: dict[str, str], *, user: str, channel: str | None,
    response_url: str | None = None, trigger_id: str | None = None, accepted: Callable[[], Awaitable[object]] | None = None,
    recorded: Callable[[], object] | None = None,
) -> str | None:
    """Start `spec` for `user`: may they, inputs coerced, the run recorded with its "Started run …" for them, kick.

    With a `trigger_id`, missing required inputs open the run form instead (what was typed filled in) and
    nothing starts (None). `accepted` is awaited once everything is checked, before anything is recorded;
    `recorded` is called as soon as the run is committed. Refusals raise (NotAllowed, InvalidInputs), and
    DatabaseUnavailable when the run cannot be recorded; each surface answers them its own way.
    """
    await require_starter(ctx, spec, user)
    if trigger_id and missing_required(spec, raw) and set(raw) <= set(spec.inputs):
        # The trigger_id lives 3 seconds: open the form right away (unknown inputs are refused below first).
        await ctx.client.views_open(trigger_id=trigger_id, view=bk.run_modal(spec, raw, channel or ""))
        return None
    values = coerce_inputs(spec, raw)
    if accepted is not None:
        await accepted()
    where = spec.channel or channel
    run_id, writes = ctx.engine.start_writes(spec, values, started_by=user, trigger="slack", channel=where)
    # "Started run …" goes through the outbox, committed with the run: retried while Slack is away.
    told = outbox.StartConfirmed(user=user, workflow=spec.name, channel=channel, follow_in=where, reply_url=response_url)
    try:
        async with ctx.db.sessions.begin() as session:
            await run_writes(session, [*writes, outbox.message(run_id, told, stream=told.stream(run_id))])
    except Exception as exc:
        if not unreachable(exc):
            raise
        raise DatabaseUnavailable(f"cannot record the run: {type(exc).__name__}: {exc}") from exc
    log.info("run.queued", run_id=run_id, workflow=spec.name, trigger="slack")
    if recorded is not None:
        recorded()
    ctx.kick()
    return run_id
