"""Who may do what on the Slack surface: start a workflow, decide a checkpoint, operate (retry, abort) a run,
retry it with edited input.

Each check either returns or records an Event (one kind per check, the person and what they tried) and
raises NotAllowed, so a refusal is kept the same way whether it came from a command, a button or a form.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agents.checkpoints import check_self_approval
from agents.errors import NotAllowed
from bot.slack import blocks as bk
from bot.slack.errors import Hinted
from storage import run_queries

if TYPE_CHECKING:
    from agents.spec import WorkflowSpec
    from bot.slack import BotContext
    from bot.slack.directory import Directory
    from storage.models import Run

START_REFUSED = "start_refused"
DECISION_REFUSED = "decision_refused"
ACTION_REFUSED = "action_refused"


async def may_start(directory: Directory, user: str, starters: Iterable[str] | None) -> bool:
    """Anyone may start a workflow without `starters`; otherwise only those listed."""
    return True if starters is None else await directory.contains(user, starters)


async def may_decide(directory: Directory, user: str, approvers: Iterable[str]) -> bool:
    """Only approvers may decide a checkpoint."""
    return await directory.contains(user, approvers)


async def may_operate(directory: Directory, user: str, run: Run) -> bool:
    """Retry or abort a run: its starter or an approver (or anyone who may start it, without approvers)."""
    spec = run.spec or {}
    approvers = list(spec.get("approvers") or [])
    if user == run.started_by or await directory.contains(user, approvers):
        return True
    return not approvers and await may_start(directory, user, spec.get("starters"))


async def require_starter(ctx: BotContext, spec: WorkflowSpec, user: str) -> None:
    """Only the workflow's starters (anyone, without them) start it; a refusal is recorded."""
    if await may_start(ctx.directory, user, spec.starters):
        return
    await _record(ctx, START_REFUSED, None, user, workflow=spec.name)
    raise Hinted(NotAllowed(f"you may not start {spec.name}"), f"Only {bk.mentions(spec.starters or [])} may start it.")


async def require_approver(ctx: BotContext, run: Run, step: str, user: str, action: str) -> None:
    """Only approvers decide; anyone else is refused, and the attempt is recorded."""
    approvers = list((run.spec or {}).get("approvers") or [])
    if await may_decide(ctx.directory, user, approvers):
        return
    await _record(ctx, DECISION_REFUSED, run.id, user, step=step, action=action)
    raise Hinted(NotAllowed(f"only the workflow's approvers may {action} this checkpoint"),
                 f"Approvers: {bk.mentions(approvers) or 'none'}.")


async def require_not_starter(ctx: BotContext, run: Run, spec: WorkflowSpec, step: str, user: str, action: str) -> None:
    """With `self_approval: false`, the run's starter may not approve or edit it; a refusal is recorded."""
    try:
        check_self_approval(spec, step, started_by=run.started_by, by=user, action=action)
    except NotAllowed:
        await _record(ctx, DECISION_REFUSED, run.id, user, step=step, action=action, reason="self_approval")
        raise


async def require_operator(ctx: BotContext, run: Run, user: str, action: str) -> None:
    """Retry, cancel and abort: the run's starter or an approver; a refusal is recorded."""
    if await may_operate(ctx.directory, user, run):
        return
    await _record(ctx, ACTION_REFUSED, run.id, user, action=action)
    raise NotAllowed(f"only the run's starter or the workflow's approvers may {action} run {run.id}")


async def require_editor(ctx: BotContext, run: Run, user: str) -> None:
    """Retry with edited input replaces a step's prompt or arguments: the workflow's approvers only; a refusal is recorded."""
    approvers = list((run.spec or {}).get("approvers") or [])
    if await may_decide(ctx.directory, user, approvers):
        return
    await _record(ctx, ACTION_REFUSED, run.id, user, action="retry_edited")
    raise Hinted(NotAllowed("only the workflow's approvers may retry with edited input"),
                 f"Approvers: {bk.mentions(approvers) or 'none'}. *Retry step* retries it as it was.")


async def _record(ctx: BotContext, kind: str, run_id: str | None, user: str, **detail: Any) -> None:
    async with ctx.db.sessions.begin() as session:
        run_queries.add_event(session=session, run_id=run_id, kind=kind, actor=user, **detail)
