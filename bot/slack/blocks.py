"""Block Kit builders. Every Slack limit (bot/slack/limits.py) is enforced here, by construction; untrusted
text is escaped.

Nothing in this module talks to Slack or the database: it turns plain values (and ORM rows read by the
caller) into `(text, blocks)` pairs and modal views.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from agents.outbox import RunFinished, StepFailed
from bot.format import MOCK_BADGE, MOCK_NOTE, decision, duration, money, readable, run_state, span, step_icon
from bot.slack.limits import (
    ACTION_ELEMENTS, BLOCKS_TEXT_BUDGET, BUTTON_TEXT, BUTTON_VALUE, CONTEXT_ELEMENTS, HEADER_TEXT, ID_LENGTH, INPUT_LENGTH,
    MAX_BLOCKS, MAX_MODAL_BLOCKS, MESSAGE_TEXT, MODAL_TITLE, PRIVATE_METADATA, SECTION_TEXT,
)
from bot.slack.mrkdwn import cut, cut_escaped, escape_mrkdwn
from storage.status import FINISHED_RUN, Action, RunStatus, StepStatus

CONTINUED = "… continued in the attached file"

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")

# action ids: the buttons carry "run_id:step" in their value (checkpoint buttons "run_id:step:version"),
# nothing else (state lives in the DB)
APPROVE = "checkpoint_approve"
EDIT = "checkpoint_edit"
REVISE = "checkpoint_revise"
REJECT = "checkpoint_reject"
RETRY = "failure_retry"
RETRY_EDITED = "failure_retry_edited"
ABORT = "failure_abort"

# modal callback ids
RUN_MODAL = "run_inputs"
EDIT_MODAL = "checkpoint_edit"
REJECT_MODAL = "checkpoint_reject"
REVISE_MODAL = "checkpoint_revise"
RETRY_MODAL = "failure_retry_edited"


# --- text --------------------------------------------------------------------------------------


def mention(ref: str | None) -> str:
    """`<@U…>` for a user, `<!subteam^S…>` for a group, the escaped word otherwise ("cli", "schedule")."""
    if not ref:
        return "someone"
    if _USER_ID.match(ref):
        return f"<@{ref}>"
    if _GROUP_ID.match(ref):
        return f"<!subteam^{ref}>"
    return escape_mrkdwn(ref)


def mentions(refs: Iterable[str]) -> str:
    """Mentions of several ids, each once, in order."""
    return ", ".join(mention(r) for r in dict.fromkeys(refs))


def when(value: datetime | str | None) -> str:
    """A short UTC time."""
    if value is None:
        return "?"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return escape_mrkdwn(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def code_block(raw: Any, limit: int = SECTION_TEXT - 200) -> tuple[str, bool]:
    """(mrkdwn code block of the escaped text within `limit`, whether it had to be cut)."""
    body = escape_mrkdwn(readable(raw)) or " "
    room = limit - 8
    if len(body) <= room:
        return f"```{body}```", False
    return f"```{cut_escaped(body, room - len(CONTINUED) - 1, '')}```\n_{CONTINUED}_", True


# --- blocks --------------------------------------------------------------------------------------


def plain(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    """A plain_text object (never parsed for mentions or links)."""
    return {"type": "plain_text", "text": cut(text or " ", limit), "emoji": True}


def md(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    """A mrkdwn object; `text` must already have its untrusted parts escaped."""
    return {"type": "mrkdwn", "text": cut_escaped(text or " ", limit), "verbatim": True}


def section(text: str) -> dict[str, Any]:
    """A section whose mrkdwn text (already escaped where untrusted) is cut to 3000 characters."""
    return {"type": "section", "text": md(text)}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain(text, HEADER_TEXT)}


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [md(t) for t in texts[:CONTEXT_ELEMENTS]]}


def block_id(value: str) -> str:
    return value[:ID_LENGTH]


def button(text: str, action_id: str, value: str, *, style: str | None = None, confirm: dict[str, Any] | None = None) -> dict[str, Any]:
    if len(value) > BUTTON_VALUE:
        raise ValueError("a button value carries ids only")
    element: dict[str, Any] = {
        "type": "button", "text": plain(text, BUTTON_TEXT), "action_id": action_id[:ID_LENGTH], "value": value,
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def actions(bid: str, *elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "block_id": block_id(bid), "elements": list(elements[:ACTION_ELEMENTS])}


def sections(lines: Sequence[str], *, title: str = "") -> list[dict[str, Any]]:
    """Lines (already safe mrkdwn) packed into as few sections as fit 3000 characters each."""
    blocks: list[dict[str, Any]] = []
    current = title
    for line in lines:
        line = cut_escaped(line, SECTION_TEXT - 10)
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > SECTION_TEXT:
            blocks.append(section(current))
            current = line
        else:
            current = candidate
    if current:
        blocks.append(section(current))
    return blocks


def text_length(value: Any) -> int:
    """Characters of text in blocks (every nested `text` string): what Slack's total for a message counts."""
    if isinstance(value, list):
        return sum(text_length(item) for item in value)
    if not isinstance(value, dict):
        return 0
    return sum(len(item) if key == "text" and isinstance(item, str) else text_length(item) for key, item in value.items())


def limit_blocks(blocks: list[dict[str, Any]], maximum: int = MAX_BLOCKS, budget: int | None = BLOCKS_TEXT_BUDGET) -> list[dict[str, Any]]:
    """At most `maximum` blocks holding at most `budget` characters of text (None: no total, as in modals).

    Blocks are kept in order while they fit (a later, smaller one may still fit after a big one is left
    out); the last actions block is always kept, and what was left out is said in a context block.
    """
    if len(blocks) <= maximum and (budget is None or text_length(blocks) <= budget):
        return blocks
    tail = [b for b in blocks if b.get("type") == "actions"][-1:]
    room = (budget if budget is not None else float("inf")) - text_length(tail) - 100  # 100: the note itself
    keep: list[dict[str, Any]] = []
    for block in blocks:
        size = text_length(block)
        if len(keep) < maximum - 1 - len(tail) and size <= room and not any(block is t for t in tail):
            keep.append(block)
            room -= size
    dropped = len(blocks) - len(keep) - len(tail)
    return [*keep, context(f"… {dropped} more blocks not shown (too long for one Slack message)"), *tail]


def message_text(text: str) -> str:
    """The notification/fallback text within Slack's 40,000 characters."""
    return cut_escaped(text, MESSAGE_TEXT - 100)


def value_of(run_id: str, step: str, version: int | None = None) -> str:
    """A button value: ids only (and, on a checkpoint's buttons, the version they were shown with)."""
    return f"{run_id}:{step}" if version is None else f"{run_id}:{step}:{version}"


def parse_value(value: str) -> tuple[str, str]:
    """(run id, step) of a button value; names never hold ':' (agents.spec)."""
    run_id, _, rest = (value or "").partition(":")
    return run_id, rest.split(":", 1)[0]


def version_in(value: str) -> int | None:
    """The checkpoint version a button carries; None on buttons posted before versions were (they mean v1)."""
    parts = (value or "").split(":")
    return int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else None


# --- the run's parent message --------------------------------------------------------------------

def started_by(run: Any) -> str:
    if run.trigger == "schedule" or run.started_by == "schedule":
        return "schedule"
    if run.trigger == "cli" and not _USER_ID.match(run.started_by or ""):
        return "cli"
    return mention(run.started_by)


def waiting_for(spec: Mapping[str, Any]) -> list[str]:
    return list(spec.get("approvers") or [])


def parent_message(run: Any, steps: Sequence[Any], attempt_counts: Mapping[str, int],
                   url: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The run's one message: each step's state, attempts, duration and cost; who started it; the state;
    an "Open run" link to its page when `url` is given."""
    state = escape_mrkdwn(run_state(run.status))
    title = f"{run.workflow} · run {run.id}" + (f" · {MOCK_BADGE}" if getattr(run, "mocked", False) else "")
    lines = []
    approvers = waiting_for(run.spec or {})
    for step in steps:
        icon = step_icon(step.status)
        name = f"*{escape_mrkdwn(step.step)}*"
        parts = [f"{icon} {name}"]
        tries = attempt_counts.get(step.step, step.attempts or 0)
        if tries:
            parts.append(f"{tries} attempt{'s' if tries != 1 else ''}")
        if step.started_at and step.finished_at:
            parts.append(span(step.started_at, step.finished_at))
        if step.cost_usd:
            parts.append(money(step.cost_usd))
        if step.status == StepStatus.AWAITING_APPROVAL:
            parts.append(f"waiting for {mentions(approvers) or 'an approver'} (see thread)")
        elif step.status == StepStatus.FAILED:
            parts.append("failed: see the report in the thread")
        elif step.status in (StepStatus.APPROVED, StepStatus.EDITED, StepStatus.REJECTED, StepStatus.EXPIRED):
            parts.append(step.status)
        lines.append(" · ".join(parts))
    blocks = [header(title)]
    summary = f"*State:* {state} · started by {started_by(run)} · cost {money(run.cost_usd)}"
    if getattr(run, "mocked", False):
        summary = f"`{MOCK_BADGE}` {summary} · {escape_mrkdwn(MOCK_NOTE)}"
    if run.started_at and run.finished_at:
        summary += f" · took {span(run.started_at, run.finished_at)}"
    if url:
        summary += f" · <{escape_mrkdwn(url)}|Open run>"
    blocks.append(section(summary))
    blocks.extend(sections(lines))
    if run.inputs:
        shown = ", ".join(f"{k}={v!r}" for k, v in run.inputs.items())
        blocks.append(context("inputs: " + escape_mrkdwn(cut(shown, 2500))))
    if run.error and run.status in FINISHED_RUN and run.status != RunStatus.SUCCEEDED:
        blocks.append(context(escape_mrkdwn(cut(run.error, 2500))))
    text = f"{run.workflow} run {run.id}: {run.status}"
    return message_text(escape_mrkdwn(text)), limit_blocks(blocks)


def parent_plain(run: Any, steps: Sequence[Any]) -> str:
    """The plain-text fallback of the parent message."""
    lines = [f"{run.workflow} · run {run.id} · {run.status} · started by {started_by(run)}"]
    lines += [f"{step_icon(s.status)} {escape_mrkdwn(s.step)}: {s.status}" for s in steps]
    return message_text("\n".join(lines))


# --- checkpoints ---------------------------------------------------------------------------------


def checkpoint_message(
    run_id: str, step: str, output: Any, approvers: Sequence[str], *, version: int = 1, revisable: bool = True,
    origin: str | None = None, progress: str | None = None,
) -> tuple[str, list[dict[str, Any]], bool]:
    """(text, blocks, cut): the output with Approve / Edit / Revise / Reject buttons carrying its version.
    `origin` (safe mrkdwn) says where a later version came from; `progress` how many approved it so far."""
    body, was_cut = code_block(output)
    who = mentions(approvers) or "an approver"
    value = value_of(run_id, step, version)
    verbs = "Approve, edit, revise or reject" if revisable else "Approve, edit or reject"
    first = f"{step_icon(StepStatus.AWAITING_APPROVAL)} *Checkpoint `{escape_mrkdwn(step)}`*"
    if version > 1:
        first += f" · v{version}" + (f", {origin}." if origin else ".") + " It"
    first += f" is waiting for {who}. {verbs} its output:"
    buttons = [button("Approve", APPROVE, value, style="primary"), button("Edit", EDIT, value)]
    if revisable:
        buttons.append(button("Revise", REVISE, value))
    buttons.append(button("Reject", REJECT, value, style="danger"))
    blocks = [section(first), section(body)]
    if progress:
        blocks.append(context(progress))
    blocks.append(actions(f"checkpoint:{run_id}:{step}", *buttons))
    text = f"Checkpoint {escape_mrkdwn(step)}" + (f" v{version}" if version > 1 else "") + f" is waiting for {who}"
    return message_text(text), blocks, was_cut


def approval_progress(approvers: Sequence[str], needed: int) -> str:
    """ "1 of 2 approved, by <@U…>" (safe mrkdwn)."""
    return f"{len(approvers)} of {needed} approved, by {mentions(approvers)}"


def revised_origin(version: int, outcome: str, by: str | None, note: str | None) -> str:
    """How a version came about (safe mrkdwn): "revised after <@U…>'s note: …" or "edited by <@U…>"."""
    if outcome == "edited":
        return f"edited by {mention(by)}"
    return f"revised after {mention(by)}'s note: “{escape_mrkdwn(cut(note or '', 1000))}”"


def revising_message(step: str, output: Any, *, version: int, by: str, note: str, at: str | None,
                     edited: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """A version sent back: its buttons give way to who asked for what; the next version follows in the thread."""
    what = f"edited by {mention(by)} at {when(at)}" if edited else f"sent back by {mention(by)} at {when(at)}"
    line = f"↻ v{version} {what}"
    if note:
        line += f": “{escape_mrkdwn(cut(note, 2000))}”"
    line += f"\nv{version + 1} follows in this thread."
    body, _ = code_block(output)
    blocks = [section(f"*Checkpoint `{escape_mrkdwn(step)}`* · v{version} · Output:"), section(body), section(line)]
    return message_text(f"Checkpoint {escape_mrkdwn(step)}: {line}"), blocks


def decided_message(step: str, output: Any, *, action: str, by: str, at: str | None, reason: str | None,
                    chars_changed: int = 0, chars_total: int = 0, version: int = 1,
                    approvers: Sequence[str] = ()) -> tuple[str, list[dict[str, Any]]]:
    """The checkpoint message once decided: the buttons give way to who decided what, when."""
    line = f"{escape_mrkdwn(decision(action))} by {mentions(approvers) if len(approvers) > 1 else mention(by)} at {when(at)}"
    if action == Action.EDIT:
        line += f" · {chars_changed} of {chars_total} characters changed"
    if reason:
        line += f"\nReason: {escape_mrkdwn(cut(reason, 2000))}"
    body, _ = code_block(output)
    label = "Output as edited:" if action == Action.EDIT else "Output:"
    shown = f" · v{version}" if version > 1 else ""
    blocks = [section(f"*Checkpoint `{escape_mrkdwn(step)}`*{shown} · {label}"), section(body), section(line)]
    return message_text(f"Checkpoint {escape_mrkdwn(step)}: {line}"), blocks


# --- failures ------------------------------------------------------------------------------------


def failure_report(run_id: str, failed: StepFailed, people: Sequence[str]) -> tuple[str, list[dict[str, Any]], dict[str, bool]]:
    """(text, blocks, which parts were cut): the step, the error, every attempt, the input, and buttons."""
    step = failed.step
    error = escape_mrkdwn(cut(failed.error or "unknown error", 1500))
    kind = escape_mrkdwn(failed.error_type or "error")
    who = mentions(people)
    blocks = [section(f"{step_icon(StepStatus.FAILED)} *Step `{escape_mrkdwn(step)}` failed* ({kind}): {error}")]
    if who:
        blocks.append(section(f"{who}: this run needs a person."))
    lines = [_attempt_line(attempt) for attempt in failed.attempts]
    input_text, input_cut = code_block(failed.input, SECTION_TEXT - 300)
    rest = [section(f"*Input*\n{input_text}")]
    raw_cut = False
    if failed.last_raw_output:
        raw_text, raw_cut = code_block(failed.last_raw_output, SECTION_TEXT - 300)
        rest.append(section(f"*Last raw output*\n{raw_text}"))
    value = value_of(run_id, step)
    rest.append(
        actions(
            f"failure:{run_id}:{step}",
            button("Retry step", RETRY, value, style="primary"),
            button("Retry with edited input", RETRY_EDITED, value),
            button("Abort", ABORT, value, style="danger", confirm={
                "title": plain("Abort this run?", 100), "text": plain("The run will be cancelled.", 300),
                "confirm": plain("Abort", 30), "deny": plain("Keep it", 30),
            }),
        )
    )
    if lines:
        # The attempts get whatever room the rest leaves in the message's text budget.
        room = BLOCKS_TEXT_BUDGET - text_length(blocks) - text_length(rest) - 200
        blocks.extend(sections(_fit_lines(lines, room, run_id), title=f"*Attempts ({len(lines)})*")[:10])
    else:
        blocks.append(section("*Attempts:* none (the step failed before calling anything)"))
    text = f"{who + ': ' if who else ''}step {escape_mrkdwn(step)} failed: {error}"
    return message_text(text), limit_blocks([*blocks, *rest]), {"input": input_cut, "raw": raw_cut}


def _attempt_line(attempt: Any) -> str:
    line = f"#{attempt.number} {when(attempt.at)}"
    if attempt.model:
        line += f" · {escape_mrkdwn(attempt.model)}"
    if attempt.error:
        line += f" · {escape_mrkdwn(attempt.error_type or 'error')}: {escape_mrkdwn(cut(attempt.error, 300))}"
    else:
        line += " · ok"
    if attempt.backoff_s is not None:
        line += f" · then waited {duration(attempt.backoff_s)}"
    return line


def _fit_lines(lines: Sequence[str], room: int, run_id: str) -> list[str]:
    """The first lines and the last one within `room` characters, with a line saying how many were left out."""
    if sum(len(line) + 1 for line in lines) <= room:
        return list(lines)
    last = cut_escaped(lines[-1], max(room // 3, 200))
    room -= len(last) + 120
    first: list[str] = []
    for line in lines[:-1]:
        if len(line) + 1 > room:
            break
        first.append(line)
        room -= len(line) + 1
    left_out = len(lines) - 1 - len(first)
    return [*first, f"_… {left_out} more attempts not shown (`overseer show {escape_mrkdwn(run_id)}` lists every one)_", last]


def failure_plain(failed: StepFailed, people: Sequence[str]) -> str:
    """Plain-text fallback of a failure report."""
    who = mentions(people)
    lines = [f"{who + ': ' if who else ''}step {escape_mrkdwn(failed.step)} failed: {escape_mrkdwn(failed.error)}"]
    for attempt in failed.attempts:
        lines.append(f"#{attempt.number} {when(attempt.at)} {escape_mrkdwn(attempt.error or 'ok')}")
    lines.append("Input:\n" + escape_mrkdwn(cut(readable(failed.input), 20000)))
    lines.append("Use `/overseer retry RUN` or `/overseer cancel RUN`.")
    return message_text("\n".join(lines))


def closed_report(blocks: Sequence[Mapping[str, Any]], note: str) -> list[dict[str, Any]]:
    """A failure report whose buttons were used: the actions give way to a note."""
    kept = [dict(b) for b in blocks if b.get("type") != "actions"]
    return limit_blocks([*kept, context(note)])


# --- notes in the thread -------------------------------------------------------------------------


def note(text: str) -> tuple[str, list[dict[str, Any]]]:
    """A one-line thread note (text is safe mrkdwn)."""
    return message_text(text), [section(text)]


def finished_note(finished: RunFinished, run: Any | None) -> str:
    """The thread's last line: how the run ended, by whom, how long it took and what it cost."""
    line = escape_mrkdwn(run_state(finished.status))
    if finished.by:
        line += f" by {mention(finished.by)}"
    if finished.reason:
        line += f": {escape_mrkdwn(cut(finished.reason, 2000))}"
    if run is not None and run.started_at and run.finished_at:
        line += f" · took {span(run.started_at, run.finished_at)}"
    line += f" · cost {money(finished.cost_usd)}"
    return "Run " + line


# --- modals --------------------------------------------------------------------------------------


def input_block(bid: str, label: str, *, initial: str | None = None, multiline: bool = False, optional: bool = False,
                hint: str | None = None, action_id: str = "value") -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id, "multiline": multiline, "max_length": INPUT_LENGTH}
    if initial:
        element["initial_value"] = initial[:INPUT_LENGTH]
    block: dict[str, Any] = {"type": "input", "block_id": block_id(bid), "label": plain(label, 2000), "element": element, "optional": optional}
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def modal(callback_id: str, title: str, blocks: list[dict[str, Any]], *, submit: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    private = json.dumps(dict(metadata), separators=(",", ":"))
    if len(private) > PRIVATE_METADATA:
        raise ValueError("private_metadata carries ids only")
    return {
        "type": "modal",
        "callback_id": callback_id[:ID_LENGTH],
        "title": plain(title, MODAL_TITLE),
        "submit": plain(submit, MODAL_TITLE),
        "close": plain("Cancel", MODAL_TITLE),
        "private_metadata": private,
        "blocks": limit_blocks(blocks, MAX_MODAL_BLOCKS, budget=None),
    }


def run_modal(spec: Any, given: Mapping[str, Any], channel: str) -> dict[str, Any]:
    """Fields from the spec's inputs, prefilled with what was typed and the defaults."""
    blocks: list[dict[str, Any]] = []
    if spec.description:
        blocks.append(section(escape_mrkdwn(cut(spec.description, 2000))))
    for name, item in list(spec.inputs.items())[:90]:
        initial = given.get(name, item.default)
        hints = [item.type]
        if item.choices:
            hints.append("one of: " + ", ".join(map(str, item.choices)))
        if item.description:
            hints.append(item.description)
        blocks.append(input_block(
            f"input:{name}", name, initial=None if initial is None else str(initial),
            multiline=item.type == "string", optional=not (item.required and item.default is None), hint=" · ".join(hints),
        ))
    return modal(RUN_MODAL, f"Run {spec.name}", blocks, submit="Start", metadata={"workflow": spec.name, "channel": channel})


def edit_modal(run_id: str, step: str, output: Any, channel: str, fmt: str, version: int | None = None) -> dict[str, Any]:
    text = readable(output)
    blocks: list[dict[str, Any]] = []
    if len(text) > INPUT_LENGTH:
        blocks.append(section(
            f"The output is {len(text)} characters; only the first {INPUT_LENGTH} fit here. "
            "The full output is attached in the run's thread. What you submit replaces the whole output."
        ))
    what = "JSON (it must still match the step's schema)" if fmt == "json" else "text"
    blocks.append(input_block("output", f"Output of {step}", initial=text, multiline=True, hint=f"Edit the {what}."))
    return modal(EDIT_MODAL, "Edit output", blocks, submit="Approve edit",
                 metadata={"run": run_id, "step": step, "channel": channel, "version": version})


def reject_modal(run_id: str, step: str, channel: str, version: int | None = None) -> dict[str, Any]:
    blocks = [input_block("reason", "Why is it rejected?", multiline=True, hint="The run stops; the reason is recorded.")]
    return modal(REJECT_MODAL, "Reject output", blocks, submit="Reject",
                 metadata={"run": run_id, "step": step, "channel": channel, "version": version})


def revise_modal(run_id: str, step: str, channel: str, version: int | None, left: int) -> dict[str, Any]:
    """A note for the model: the step runs again with its output and this note, and the result is the next version."""
    blocks = [input_block(
        "note", "What should change?", multiline=True,
        hint=f"The step runs again with its output and your note; the new version replaces this one. {left} revision(s) left.",
    )]
    return modal(REVISE_MODAL, "Revise output", blocks, submit="Revise",
                 metadata={"run": run_id, "step": step, "channel": channel, "version": version})


def retry_modal(run_id: str, step: str, kind: str, step_input: Any, channel: str) -> dict[str, Any]:
    """The failed step's input to edit: prompt (and system) for model steps, args JSON for tool steps."""
    blocks: list[dict[str, Any]] = []
    if kind == "model":
        values = step_input if isinstance(step_input, dict) else {"prompt": readable(step_input)}
        prompt, system = readable(values.get("prompt")), readable(values.get("system"))
        if len(prompt) > INPUT_LENGTH or len(system) > INPUT_LENGTH:
            blocks.append(section(f"The input is longer than {INPUT_LENGTH} characters and is shown cut; what you submit replaces it."))
        blocks.append(input_block("system", "System message", initial=system, multiline=True, optional=True))
        blocks.append(input_block("prompt", "Prompt", initial=prompt, multiline=True))
    else:
        args = readable(step_input if step_input is not None else {})
        if len(args) > INPUT_LENGTH:
            blocks.append(section(f"The arguments are longer than {INPUT_LENGTH} characters and are shown cut."))
        blocks.append(input_block("args", "Tool arguments (JSON object)", initial=args, multiline=True))
    return modal(RETRY_MODAL, "Retry with input", blocks, submit="Retry", metadata={"run": run_id, "step": step, "channel": channel, "kind": kind})
