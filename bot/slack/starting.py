"""Starting a run from Slack: the one path the slash command and the run form share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agents.errors import DatabaseUnavailable
from agents.inputs import coerce_inputs, missing_required
from bot.slack import blocks as bk
from bot.slack.errors import tell
from bot.slack.permissions import require_starter
from storage.db import unreachable

if TYPE_CHECKING:
    from agents.spec import WorkflowSpec
    from bot.slack import BotContext


async def start_run(
    ctx: BotContext, spec: WorkflowSpec, raw: dict[str, str], *, user: str, channel: str | None,
    response_url: str | None = None, trigger_id: str | None = None, accepted: Callable[[], Awaitable[object]] | None = None,
    recorded: Callable[[], object] | None = None,
) -> str | None:
    """Start `spec` for `user`: may they, inputs coerced, engine.start, kick, and "Started run …" told to them.

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
    try:
        run_id = await ctx.engine.start(spec, values, started_by=user, trigger="slack", channel=where)
    except Exception as exc:
        if not unreachable(exc):
            raise
        raise DatabaseUnavailable(f"cannot record the run: {type(exc).__name__}: {exc}") from exc
    if recorded is not None:
        recorded()
    ctx.kick()
    await tell(ctx.client, channel=channel, user=user, response_url=response_url,
               text=f"Started run `{run_id}` of *{bk.escape_mrkdwn(spec.name)}*; follow it in <#{where}>.")
    return run_id
