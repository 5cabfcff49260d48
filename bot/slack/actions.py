"""Button clicks: checkpoint Approve / Edit / Revise / Reject, failure Retry / Retry with edited input / Abort.

Buttons carry "run_id:step" only (a checkpoint's, "run_id:step:version": a click on an older version
decides nothing); everything else is read from the database, so they work after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from agents.checkpoints import checkpoint_of
from agents.errors import AlreadyDecided, InvalidState, StaleVersion, UnknownRun
from agents.spec import ModelStep, WorkflowSpec
from bot.slack import blocks as bk
from bot.slack.errors import answering
from bot.slack.permissions import require_approver, require_editor, require_not_starter, require_operator
from storage import run_queries
from storage.models import Run, StepRun
from storage.status import Action, RunStatus, StepStatus

if TYPE_CHECKING:
    from bot.slack import BotContext

@dataclass(frozen=True)
class Click:
    """A parsed button click."""

    user: str
    channel: str | None
    run_id: str
    step: str
    trigger_id: str | None
    response_url: str | None = None
    version: int | None = None  # the checkpoint version the button was shown with (None: posted before versions, v1)


def parse_click(body: dict[str, Any]) -> Click:
    action = (body.get("actions") or [{}])[0]
    value = str(action.get("value") or "")
    run_id, step = bk.parse_value(value)
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return Click(str((body.get("user") or {}).get("id")), channel, run_id, step, body.get("trigger_id"), body.get("response_url"),
                 bk.version_in(value) or 1)


async def load_step(ctx: BotContext, run_id: str, step: str) -> tuple[Run, StepRun, WorkflowSpec]:
    async with ctx.db.sessions() as session:
        run = await run_queries.get_run(session=session, run_id=run_id)
        step_run = await run_queries.get_step_run(session=session, run_id=run_id, step=step) if run else None
    if run is None or step_run is None:
        raise UnknownRun(f"no step {step!r} in run {run_id!r}")
    return run, step_run, WorkflowSpec.model_validate(run.spec)


async def require_waiting(ctx: BotContext, step_run: StepRun, run: Run, version: int | None = None) -> None:
    """The checkpoint must still wait, at the version shown; if someone decided first, say who."""
    if version is not None and version != step_run.version:
        raise StaleVersion(f"a newer version is up: this is v{version}, the checkpoint is at v{step_run.version}",
                           shown=version, current=step_run.version)
    if step_run.status == StepStatus.AWAITING_APPROVAL and run.status == RunStatus.AWAITING_APPROVAL:
        return
    async with ctx.db.sessions() as session:
        first = await run_queries.decision_for(session=session, step_run_id=step_run.id)
    if first is not None:
        raise AlreadyDecided(f"{Action(first.action).past} at {bk.when(first.decided_at)}",
                             decided_by=first.decided_by, action=first.action)
    raise InvalidState(f"run {run.id} is {run.status}; this checkpoint can no longer be decided")


def register(app: AsyncApp, ctx: BotContext) -> None:
    def listener(handler: Any) -> Any:
        async def run(ack: AsyncAck, body: dict[str, Any]) -> None:
            async with ctx.working():
                await ack()  # first, always
                click = parse_click(body)
                async with answering(ctx.client, channel=click.channel, user=click.user, response_url=click.response_url):
                    await handler(ctx, click)

        return run

    app.action(bk.APPROVE)(listener(approve))
    app.action(bk.EDIT)(listener(open_edit))
    app.action(bk.REVISE)(listener(open_revise))
    app.action(bk.REJECT)(listener(open_reject))
    app.action(bk.RETRY)(listener(retry))
    app.action(bk.RETRY_EDITED)(listener(open_retry_edited))
    app.action(bk.ABORT)(listener(abort))


async def approve(ctx: BotContext, click: Click) -> None:
    run, _, spec = await load_step(ctx, click.run_id, click.step)
    await require_approver(ctx, run, click.step, click.user, Action.APPROVE)
    await require_not_starter(ctx, run, spec, click.step, click.user, Action.APPROVE)
    await ctx.engine.decide(click.run_id, click.step, action=Action.APPROVE, by=click.user, version=click.version)
    ctx.kick()


async def open_edit(ctx: BotContext, click: Click) -> None:
    run, step_run, spec = await load_step(ctx, click.run_id, click.step)
    await require_approver(ctx, run, click.step, click.user, Action.EDIT)
    await require_not_starter(ctx, run, spec, click.step, click.user, Action.EDIT)
    await require_waiting(ctx, step_run, run, click.version)
    view = bk.edit_modal(run.id, click.step, step_run.output, click.channel or run.channel or "", spec.step(click.step).output.format,
                         click.version)
    await ctx.client.views_open(trigger_id=click.trigger_id, view=view)


async def open_revise(ctx: BotContext, click: Click) -> None:
    run, step_run, spec = await load_step(ctx, click.run_id, click.step)
    await require_approver(ctx, run, click.step, click.user, "revise")
    await require_waiting(ctx, step_run, run, click.version)
    if not isinstance(spec.step(click.step), ModelStep):
        raise InvalidState(f"{click.step} is a tool step: only a model step can be revised with a note")
    left = checkpoint_of(spec, click.step).max_revisions - step_run.revisions
    if left <= 0:
        raise InvalidState(f"no revisions left: {click.step} allows {checkpoint_of(spec, click.step).max_revisions}; approve, edit or reject it")
    view = bk.revise_modal(run.id, click.step, click.channel or run.channel or "", click.version, left)
    await ctx.client.views_open(trigger_id=click.trigger_id, view=view)


async def open_reject(ctx: BotContext, click: Click) -> None:
    run, step_run, _ = await load_step(ctx, click.run_id, click.step)
    await require_approver(ctx, run, click.step, click.user, Action.REJECT)
    await require_waiting(ctx, step_run, run, click.version)
    view = bk.reject_modal(run.id, click.step, click.channel or run.channel or "", click.version)
    await ctx.client.views_open(trigger_id=click.trigger_id, view=view)


async def retry(ctx: BotContext, click: Click) -> None:
    run, _, _ = await load_step(ctx, click.run_id, click.step)
    await require_operator(ctx, run, click.user, "retry")
    await ctx.engine.retry(run.id, by=click.user)
    ctx.kick()


def failed_input(spec: WorkflowSpec, step_run: StepRun) -> Any:
    """What the failed step was called with (or, if it never got that far, its spec's own input)."""
    if step_run.input_override is not None:
        return step_run.input_override
    if step_run.input is not None:
        return step_run.input
    step = spec.step(step_run.step)
    if step.kind == "model":
        return {"system": getattr(step, "system", None), "prompt": getattr(step, "prompt", "")}
    return dict(getattr(step, "args", {}))


async def open_retry_edited(ctx: BotContext, click: Click) -> None:
    run, step_run, spec = await load_step(ctx, click.run_id, click.step)
    await require_editor(ctx, run, click.user)
    if run.status != RunStatus.FAILED or step_run.status != StepStatus.FAILED:
        raise InvalidState(f"run {run.id} is {run.status}; only a failed run can be retried")
    view = bk.retry_modal(run.id, click.step, spec.step(click.step).kind, failed_input(spec, step_run), click.channel or run.channel or "")
    await ctx.client.views_open(trigger_id=click.trigger_id, view=view)


async def abort(ctx: BotContext, click: Click) -> None:
    run, _, _ = await load_step(ctx, click.run_id, click.step)
    await require_operator(ctx, run, click.user, "abort")
    await ctx.engine.cancel(run.id, by=click.user)
    ctx.kick()
