"""Modal submissions: run inputs, an edited checkpoint output, a rejection reason, a retry's edited input.

A submission that cannot be accepted is answered inline (`response_action: errors`) before anything
changes; otherwise the modal closes at once and the work happens after the ack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from agents.contract import check_edit
from agents.errors import ContractViolation, InvalidInputs, NotAllowed, OverseerError, UnknownWorkflow
from agents.inputs import coerce_inputs
from bot.slack import blocks as bk
from bot.slack.actions import load_step, require_approver, require_operator
from bot.slack.errors import answering, inline_message, tell

if TYPE_CHECKING:
    from bot.slack import BotContext


@dataclass(frozen=True)
class Submission:
    """A parsed view_submission: who, the ids carried in private_metadata, and the typed values."""

    user: str
    meta: dict[str, Any]
    values: dict[str, str]

    @property
    def channel(self) -> str | None:
        return self.meta.get("channel") or None


def parse_submission(body: dict[str, Any]) -> Submission:
    view = body.get("view") or {}
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        meta = {}
    values: dict[str, str] = {}
    for block_id, fields in ((view.get("state") or {}).get("values") or {}).items():
        for field in fields.values():
            value = field.get("value")
            if value is None and field.get("selected_option"):
                value = field["selected_option"].get("value")
            values[block_id] = value if value is not None else ""
    return Submission(str((body.get("user") or {}).get("id")), meta if isinstance(meta, dict) else {}, values)


def register(app: AsyncApp, ctx: BotContext) -> None:
    def listener(handler: Any) -> Any:
        async def run(ack: AsyncAck, body: dict[str, Any]) -> None:
            submission = parse_submission(body)
            acked = False

            async def answer(**kwargs: Any) -> None:
                nonlocal acked
                if not acked:
                    acked = True
                    await ack(**kwargs)

            async with ctx.working():
                try:
                    async with answering(ctx.client, channel=submission.channel, user=submission.user):
                        await handler(ctx, submission, answer)
                finally:
                    await answer()  # the modal always gets its answer

        return run

    app.view(bk.RUN_MODAL)(listener(submit_run))
    app.view(bk.EDIT_MODAL)(listener(submit_edit))
    app.view(bk.REJECT_MODAL)(listener(submit_reject))
    app.view(bk.RETRY_MODAL)(listener(submit_retry))


async def _refuse(answer: Any, block_id: str, exc: OverseerError) -> None:
    await answer(response_action="errors", errors={block_id: inline_message(exc)})


async def submit_run(ctx: BotContext, sub: Submission, answer: Any) -> None:
    spec = ctx.specs.get(str(sub.meta.get("workflow")))
    fields = {k.removeprefix("input:"): v for k, v in sub.values.items() if k.startswith("input:")}
    first = next(iter(sub.values), "input:")
    if spec is None:
        await _refuse(answer, first, UnknownWorkflow(f"workflow {sub.meta.get('workflow')!r} is no longer loaded"))
        return
    if not await ctx.directory.may_start(sub.user, spec.starters):
        await _refuse(answer, first, NotAllowed(f"you may not start {spec.name}"))
        return
    try:
        values = coerce_inputs(spec, {k: v for k, v in fields.items() if v not in (None, "")})
    except InvalidInputs as exc:
        named = next((n for n in spec.inputs if repr(n) in str(exc)), None)
        await _refuse(answer, f"input:{named}" if named else first, exc)
        return
    await answer()
    run_id = await ctx.engine.start(spec, values, started_by=sub.user, trigger="slack", channel=spec.channel or sub.channel)
    ctx.kick()
    await tell(ctx.client, channel=sub.channel, user=sub.user,
               text=f"Started run `{run_id}` of *{bk.escape_mrkdwn(spec.name)}*; follow it in <#{spec.channel or sub.channel}>.")


async def submit_edit(ctx: BotContext, sub: Submission, answer: Any) -> None:
    run_id, step = str(sub.meta.get("run")), str(sub.meta.get("step"))
    run, _, spec = await load_step(ctx, run_id, step)
    try:
        await require_approver(ctx, run, step, sub.user, "edit")
        edited = sub.values.get("output", "")
        check_edit(spec.step(step).output, edited)  # a broken edit is refused inline; nothing changes
    except (ContractViolation, NotAllowed) as exc:
        await _refuse(answer, "output", exc)
        return
    await answer()
    await ctx.engine.decide(run_id, step, action="edit", by=sub.user, edited=edited)
    ctx.kick()


async def submit_reject(ctx: BotContext, sub: Submission, answer: Any) -> None:
    run_id, step = str(sub.meta.get("run")), str(sub.meta.get("step"))
    run, _, _ = await load_step(ctx, run_id, step)
    reason = (sub.values.get("reason") or "").strip()
    try:
        await require_approver(ctx, run, step, sub.user, "reject")
        if not reason:
            raise InvalidInputs("say why it is rejected")
    except (NotAllowed, InvalidInputs) as exc:
        await _refuse(answer, "reason", exc)
        return
    await answer()
    await ctx.engine.decide(run_id, step, action="reject", by=sub.user, reason=reason)
    ctx.kick()


async def submit_retry(ctx: BotContext, sub: Submission, answer: Any) -> None:
    run_id, step = str(sub.meta.get("run")), str(sub.meta.get("step"))
    run, _, spec = await load_step(ctx, run_id, step)
    kind = spec.step(step).kind
    block = "prompt" if kind == "model" else "args"
    try:
        await require_operator(ctx, run, sub.user, "retry")
        if kind == "model":
            prompt = sub.values.get("prompt") or ""
            if not prompt.strip():
                raise InvalidInputs("the prompt cannot be empty")
            step_input: Any = {"system": sub.values.get("system") or None, "prompt": prompt}
        else:
            try:
                step_input = json.loads(sub.values.get("args") or "")
            except ValueError as exc:
                raise InvalidInputs(f"not valid JSON: {exc}") from None
            if not isinstance(step_input, dict):
                raise InvalidInputs("the arguments must be a JSON object, like {\"url\": \"https://…\"}")
    except (NotAllowed, InvalidInputs) as exc:
        await _refuse(answer, block, exc)
        return
    await answer()
    await ctx.engine.retry(run_id, by=sub.user, step_input=step_input)
    ctx.kick()
