"""`/overseer run|list|status|cancel|retry|digest|help`: ack, parse, one call into the engine, answer.

Every command is acked at once, except `run`: its run is committed first (milliseconds) and then acked,
so a command Slack was told we took is never lost to a crash in between; within ACK_BUDGET whatever
happens, as Slack waits 3 seconds.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp

from agents.errors import InvalidInputs, UnknownRun, UnknownWorkflow, UserInputError
from agents.inputs import parse_assignments
from agents.spec import WorkflowSpec
from bot.slack import blocks as bk
from bot.slack import result_blocks as rb
from bot.slack.errors import Hinted, answering, tell
from bot.slack.limits import COMMAND_TEXT
from bot.slack.permissions import require_operator
from bot.slack.starting import start_run
from storage import run_queries
from storage.models import Run, utcnow

if TYPE_CHECKING:
    from bot.slack import BotContext

log = structlog.get_logger("overseer.slack.commands")

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_STARTS = ("run", "start")
ACK_BUDGET = 2.0  # seconds a run's start may take before the ack goes out regardless
NOT_CONFIRMED = ("Not started yet: the database is slow to answer. You will be told here once the run has started; "
                 "if you hear nothing within a minute, it did not start.")


def help_text(cmd: str) -> str:
    return (
        f"*Overseer* runs small, scoped agents under human supervision.\n"
        f"• `{cmd} run WORKFLOW key=value key2=\"a quoted value\"`: start a run (missing inputs open a form)\n"
        f"• `{cmd} list`: the workflows and their inputs\n"
        f"• `{cmd} status [RUN]`: recent runs, or one run step by step\n"
        f"• `{cmd} cancel RUN` · `{cmd} retry RUN`: stop a run, or retry a failed one from its failed step\n"
        f"• `{cmd} digest [DAYS]`: how the agents did lately\n"
        f"• `{cmd} help`: this message"
    )


@dataclass(frozen=True)
class Command:
    """A parsed slash command: the verb and its words."""

    verb: str
    args: list[str]


def parse(text: str | None, cmd: str) -> Command:
    """Split like a shell (quotes group words); Slack's smart quotes and &amp; escapes are undone first.

    Text over COMMAND_TEXT characters is refused unread (splitting a megabyte held the loop for minutes).
    """
    if len(text or "") > COMMAND_TEXT:
        raise Hinted(InvalidInputs(f"that command is {len(text or ''):,} characters long; at most {COMMAND_TEXT:,} are read"),
                     f"Shorten it, or write `{cmd} run WORKFLOW` and fill in the form.")
    raw = (text or "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").translate(_QUOTES)
    try:
        words = shlex.split(raw)
    except ValueError as exc:
        raise Hinted(InvalidInputs(f"cannot read that command: {exc}"), help_text(cmd)) from None
    if not words:
        return Command("help", [])
    return Command(words[0].lower(), words[1:])


async def _answer(ctx: BotContext, body: dict[str, Any], text: str, blocks: list[dict[str, Any]] | None = None) -> None:
    """Reply to the person who typed the command, only them."""
    await tell(ctx.client, channel=body.get("channel_id"), user=body.get("user_id"), text=text, blocks=blocks,
               response_url=body.get("response_url"))


def starts_a_run(text: str | None) -> bool:
    """Whether the command looks like `run …` (cheaply: nothing is parsed before the length check)."""
    text = text or ""
    head = text.split(None, 1) if len(text) <= COMMAND_TEXT else []
    return bool(head) and head[0].lower() in _STARTS


def register(app: AsyncApp, ctx: BotContext) -> None:
    @app.command(ctx.command)
    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        async with ctx.working():
            if not starts_a_run(body.get("text")):
                await ack()  # first: the work happens after
                await handle(ctx, body)
                return
            committed = asyncio.Event()
            work = asyncio.ensure_future(handle(ctx, body, recorded=committed.set))
            if await _settled(work, committed, ACK_BUDGET):
                await ack()
            else:
                await ack(text=NOT_CONFIRMED)
            await work


async def _settled(work: asyncio.Future[None], committed: asyncio.Event, timeout: float) -> bool:
    """Wait until the run is committed or the work is over (refused, a form opened): False after `timeout`."""
    waiting = asyncio.ensure_future(committed.wait())
    try:
        await asyncio.wait({work, waiting}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    return committed.is_set() or work.done()


async def handle(ctx: BotContext, body: dict[str, Any], *, recorded: Callable[[], object] | None = None) -> None:
    """Answer one slash command; `recorded` is called once a run it starts is committed."""
    user, channel = body.get("user_id"), body.get("channel_id")
    async with answering(ctx.client, channel=channel, user=user, response_url=body.get("response_url")):
        command = parse(body.get("text"), ctx.command)
        if command.verb in _STARTS:
            await _run(ctx, body, command.args, recorded=recorded)
            return
        verb = _VERBS.get(command.verb)
        if verb is None:
            raise Hinted(UserInputError(f"unknown command {command.verb!r}"), help_text(ctx.command))
        await verb(ctx, body, command.args)


async def _help(ctx: BotContext, body: dict[str, Any], args: list[str]) -> None:
    await _answer(ctx, body, text=help_text(ctx.command))


def _usage(ctx: BotContext, spec: WorkflowSpec) -> str:
    parts = []
    for name, item in spec.inputs.items():
        example = f'{name}="…"' if item.type == "string" else f"{name}=…"
        parts.append(example if item.required and item.default is None else f"[{example}]")
    return f"Write it like this: `{ctx.command} run {spec.name} {' '.join(parts)}`".rstrip()


def _workflow_names(ctx: BotContext) -> str:
    return ", ".join(f"`{bk.escape_mrkdwn(n)}`" for n in sorted(ctx.specs)) or "none are loaded"


async def _run(ctx: BotContext, body: dict[str, Any], args: list[str], *, recorded: Callable[[], object] | None = None) -> None:
    if not args:
        raise Hinted(UserInputError("which workflow?"), f"Write `{ctx.command} run WORKFLOW key=value`. Workflows: {_workflow_names(ctx)}")
    spec = ctx.specs.get(args[0])
    if spec is None:
        raise Hinted(UnknownWorkflow(f"no workflow called {args[0]!r}"), f"Workflows: {_workflow_names(ctx)}. See `{ctx.command} list`.")
    try:
        await start_run(ctx, spec, parse_assignments(args[1:]), user=str(body.get("user_id")), channel=str(body.get("channel_id")),
                        response_url=body.get("response_url"), trigger_id=body.get("trigger_id"), recorded=recorded)
    except InvalidInputs as exc:
        raise Hinted(exc, _usage(ctx, spec)) from None


async def _list(ctx: BotContext, body: dict[str, Any], args: list[str]) -> None:
    lines = []
    for name, spec in sorted(ctx.specs.items()):
        inputs = ", ".join(
            f"{n}{'' if s.required and s.default is None else '?'}" for n, s in spec.inputs.items()
        ) or "no inputs"
        line = f"• *{bk.escape_mrkdwn(name)}*: {bk.escape_mrkdwn(bk.cut(spec.description, 200)) or '–'} · inputs: {bk.escape_mrkdwn(inputs)}"
        if spec.channel:
            line += f" · posts in <#{spec.channel}>"
        lines.append(line)
    text = "*Workflows*\n" + ("\n".join(lines) if lines else "none are loaded")
    blocks = bk.limit_blocks(bk.sections(lines, title="*Workflows*") or [bk.section("No workflows are loaded.")])
    await _answer(ctx, body, text=bk.message_text(text), blocks=blocks)


def _run_line(run: Run) -> str:
    return (f"• `{run.id}` *{bk.escape_mrkdwn(run.workflow)}* · {bk.escape_mrkdwn(run.status)} · "
            f"started by {bk.started_by(run)} at {bk.when(run.created_at)}")


async def _status(ctx: BotContext, body: dict[str, Any], args: list[str]) -> None:
    async with ctx.db.sessions() as session:
        if not args:
            runs = list(await run_queries.list_runs(session=session, limit=15))
            lines = [_run_line(r) for r in runs]
            text = "*Recent runs*\n" + ("\n".join(lines) if lines else "none yet")
            blocks = bk.sections(lines, title="*Recent runs*") if lines else [bk.section("No runs yet.")]
            await _answer(ctx, body, text=bk.message_text(text), blocks=bk.limit_blocks(blocks))
            return
        run = await run_queries.find_run(session=session, ref=args[0])
        if run is None:
            raise Hinted(UnknownRun(f"no run {args[0]!r}"), f"`{ctx.command} status` lists recent runs; write `{ctx.command} status RUN_ID`.")
        steps = list(await run_queries.step_runs(session=session, run_id=run.id))
        counts: dict[str, int] = {}
        for attempt in await run_queries.attempts(session=session, run_id=run.id):
            counts[attempt.step] = counts.get(attempt.step, 0) + 1
    await _answer(ctx, body, *_run_status(ctx, run, steps, counts))


def _run_status(ctx: BotContext, run: Run, steps: list[Any], counts: dict[str, int]) -> tuple[str, list[dict[str, Any]]]:
    """One run step by step, each step's output cut short, and the link to its page below when there is one."""
    text, blocks = bk.parent_message(run, steps, counts)
    for step in steps:
        blocks += rb.status_output_lines(step.step, step.output)
    url = ctx.links.run_url(run.id) if ctx.links else None
    if url:
        blocks.append(bk.section(f"<{bk.escape_mrkdwn(url)}|Open run> for every input, output and attempt"))
    return text, bk.limit_blocks(blocks)


async def _operated_run(ctx: BotContext, body: dict[str, Any], args: list[str], verb: str) -> Run:
    """The run named in args, checked that this person may cancel or retry it."""
    if not args:
        raise Hinted(UserInputError("which run?"), f"Write `{ctx.command} {verb} RUN_ID` (see `{ctx.command} status`).")
    async with ctx.db.sessions() as session:
        run = await run_queries.find_run(session=session, ref=args[0])
    if run is None:
        raise Hinted(UnknownRun(f"no run {args[0]!r}"), f"`{ctx.command} status` lists recent runs.")
    await require_operator(ctx, run, str(body.get("user_id")), verb)
    return run


async def _cancel(ctx: BotContext, body: dict[str, Any], args: list[str]) -> None:
    run = await _operated_run(ctx, body, args, "cancel")
    await ctx.engine.cancel(run.id, by=str(body.get("user_id")))
    ctx.kick()
    await _answer(ctx, body, text=f"Cancelled run `{run.id}`.")


async def _retry(ctx: BotContext, body: dict[str, Any], args: list[str]) -> None:
    run = await _operated_run(ctx, body, args, "retry")
    await ctx.engine.retry(run.id, by=str(body.get("user_id")))
    ctx.kick()
    await _answer(ctx, body, text=f"Retrying run `{run.id}` from its failed step.")


async def _digest(ctx: BotContext, body: dict[str, Any], args: list[str]) -> None:
    try:
        days = int(args[0]) if args else 1
        if not 1 <= days <= 365:
            raise ValueError
    except ValueError:
        raise Hinted(InvalidInputs(f"{args[0]!r} is not a number of days"), f"Write `{ctx.command} digest 7`.") from None
    from agents.digest import compute_digest  # written alongside; imported when first needed
    from bot.digest import digest_message

    digest = await compute_digest(ctx.db, now=utcnow(), days=days, workflows=sorted(ctx.specs))
    text, blocks = digest_message(digest.to_payload())
    await _answer(ctx, body, text=bk.message_text(text),
               blocks=bk.limit_blocks(list(blocks)))


_VERBS = {
    "list": _list, "ls": _list, "status": _status, "cancel": _cancel, "abort": _cancel,
    "retry": _retry, "digest": _digest, "help": _help,
}
