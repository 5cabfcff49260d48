"""Modal submissions: run inputs, an edited checkpoint output, a rejection reason, a revision's note, a
retry's edited input.

A submission that cannot be accepted is answered inline (`response_action: errors`) before anything
changes; otherwise the modal closes at once and the work happens after the ack.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from agents.contract import check_edit
from agents.errors import InvalidInputs, OverseerError, UnknownWorkflow, UserInputError
from bot.slack import blocks as bk
from bot.slack.actions import load_step
from bot.slack.errors import answering, inline_message
from bot.slack.permissions import require_approver, require_editor
from bot.slack.starting import start_run
from storage.status import Action

if TYPE_CHECKING:
    from agents.spec import WorkflowSpec
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


Answer = Callable[..., Awaitable[bool]]


def register(app: AsyncApp, ctx: BotContext) -> None:
    def listener(handler: Any) -> Any:
        async def run(ack: AsyncAck, body: dict[str, Any]) -> None:
            submission = parse_submission(body)
            acked = False

            async def answer(**kwargs: Any) -> bool:
                nonlocal acked
                if acked:
                    return False
                acked = True
                await ack(**kwargs)
                return True

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
    app.view(bk.REVISE_MODAL)(listener(submit_revise))
    app.view(bk.RETRY_MODAL)(listener(submit_retry))


async def _refuse(answer: Answer, block_id: str, exc: OverseerError) -> None:
    """Answer inline under `block_id`; once the modal has closed, the error goes to `answering` instead."""
    if not await answer(response_action="errors", errors={block_id: inline_message(exc)}):
        raise exc


async def submit_run(ctx: BotContext, sub: Submission, answer: Answer) -> None:
    spec = ctx.specs.get(str(sub.meta.get("workflow")))
    fields = {k.removeprefix("input:"): v for k, v in sub.values.items() if k.startswith("input:")}
    first = next(iter(sub.values), "input:")
    if spec is None:
        await _refuse(answer, first, UnknownWorkflow(f"workflow {sub.meta.get('workflow')!r} is no longer loaded"))
        return
    try:
        await start_run(ctx, spec, fields, user=sub.user, channel=sub.channel, accepted=answer)
    except UserInputError as exc:
        named = next((n for n in spec.inputs if repr(n) in str(exc)), None)
        await _refuse(answer, f"input:{named}" if named else first, exc)


async def _decide(ctx: BotContext, sub: Submission, answer: Answer, action: str, block: str,
                  typed: Callable[[WorkflowSpec, str], dict[str, Any]]) -> None:
    """An approver's edit or reject: what they typed is checked first and refused inline; nothing changes then."""
    run_id, step = str(sub.meta.get("run")), str(sub.meta.get("step"))
    run, _, spec = await load_step(ctx, run_id, step)
    try:
        await require_approver(ctx, run, step, sub.user, action)
        decision = typed(spec, step)
    except UserInputError as exc:
        await _refuse(answer, block, exc)
        return
    await answer()
    await ctx.engine.decide(run_id, step, action=action, by=sub.user, version=shown_version(sub), **decision)
    ctx.kick()


def shown_version(sub: Submission) -> int | None:
    """The checkpoint version the modal was opened from (carried in its private_metadata)."""
    version = sub.meta.get("version")
    return version if isinstance(version, int) else None


async def submit_edit(ctx: BotContext, sub: Submission, answer: Answer) -> None:
    def edited(spec: WorkflowSpec, step: str) -> dict[str, Any]:
        text = sub.values.get("output", "")
        check_edit(spec.step(step).output, text)  # a ContractViolation
        return {"edited": text}

    await _decide(ctx, sub, answer, Action.EDIT, "output", edited)


async def submit_reject(ctx: BotContext, sub: Submission, answer: Answer) -> None:
    def reason(spec: WorkflowSpec, step: str) -> dict[str, Any]:
        text = (sub.values.get("reason") or "").strip()
        if not text:
            raise InvalidInputs("say why it is rejected")
        return {"reason": text}

    await _decide(ctx, sub, answer, Action.REJECT, "reason", reason)


async def submit_revise(ctx: BotContext, sub: Submission, answer: Answer) -> None:
    run_id, step = str(sub.meta.get("run")), str(sub.meta.get("step"))
    run, _, _ = await load_step(ctx, run_id, step)
    note = (sub.values.get("note") or "").strip()
    try:
        await require_approver(ctx, run, step, sub.user, "revise")
        if not note:
            raise InvalidInputs("say what should change")
    except UserInputError as exc:
        await _refuse(answer, "note", exc)
        return
    await answer()
    await ctx.engine.revise(run_id, step, by=sub.user, note=note, version=shown_version(sub))
    ctx.kick()


async def submit_retry(ctx: BotContext, sub: Submission, answer: Answer) -> None:
    run_id, step = str(sub.meta.get("run")), str(sub.meta.get("step"))
    run, _, spec = await load_step(ctx, run_id, step)
    kind = spec.step(step).kind
    block = "prompt" if kind == "model" else "args"
    try:
        await require_editor(ctx, run, sub.user)
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
    except UserInputError as exc:
        await _refuse(answer, block, exc)
        return
    await answer()
    await ctx.engine.retry(run_id, by=sub.user, step_input=step_input)
    ctx.kick()
