"""A run's result in Slack: each published output readable (a JSON object as fields, text as text),
within Slack's limits; whatever had to be cut is named for a file upload of the whole value.

Also the per-step outputs `/overseer status RUN` shows. Plain values in, `(text, blocks, files)` out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.format import readable
from bot.slack.blocks import CONTINUED, code_block, context, limit_blocks, message_text, section, text_length
from bot.slack.limits import BLOCKS_TEXT_BUDGET, FIELD_TEXT, SECTION_FIELDS, SECTION_TEXT
from bot.slack.mrkdwn import cut_escaped, escape_mrkdwn

TEXT_ROOM = SECTION_TEXT - 200  # a text output's room in one section
FIELD_ROOM = FIELD_TEXT - 100  # one JSON field's value
MAX_FIELDS = 30  # more keys than this read better as the attached file
STATUS_ROOM = 600  # a step's output in /overseer status: a glimpse, the page or `overseer show` has it all


@dataclass(frozen=True)
class ResultFile:
    """A whole output to upload beside the message (it was cut in the blocks)."""

    step: str
    filename: str
    content: str
    title: str


def _field(key: str, value: Any) -> tuple[dict[str, Any], bool]:
    """One `*key*\\nvalue` field (nested values as compact JSON); whether the value was cut."""
    if isinstance(value, str):
        shown = escape_mrkdwn(value) or " "
    elif isinstance(value, (dict, list)):
        shown = f"`{escape_mrkdwn(json.dumps(value, ensure_ascii=False))}`"
    else:
        shown = escape_mrkdwn(json.dumps(value, ensure_ascii=False))
    name = f"*{escape_mrkdwn(key)[:200]}*\n"
    cut = len(shown) > FIELD_ROOM
    if cut:
        shown = cut_escaped(shown, FIELD_ROOM - 2) + ("`…" if shown.startswith("`") else "…")
    return {"type": "mrkdwn", "text": name + shown, "verbatim": True}, cut


def _fields(value: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """A JSON object as sections of up to ten fields; whether anything was cut."""
    fields, cut = [], False
    for key, item in value.items():
        field, was_cut = _field(str(key), item)
        fields.append(field)
        cut = cut or was_cut
    blocks = [{"type": "section", "fields": fields[i:i + SECTION_FIELDS]} for i in range(0, len(fields), SECTION_FIELDS)]
    return blocks, cut


def output_blocks(value: Any, room: int = TEXT_ROOM) -> tuple[list[dict[str, Any]], bool]:
    """(blocks showing one output, whether it was cut): an object as fields, text as text, the rest as code."""
    if isinstance(value, Mapping) and value and len(value) <= MAX_FIELDS and room >= TEXT_ROOM:
        return _fields(value)
    if isinstance(value, str):
        body = escape_mrkdwn(value) or " "
        if len(body) <= room:
            return [section(body)], False
        return [section(f"{cut_escaped(body, room - len(CONTINUED) - 4, '')}…\n_{CONTINUED}_")], True
    body, cut = code_block(value, limit=room)
    return [section(body)], cut


def _file(run_id: str, step: str, value: Any, fmt: str) -> ResultFile:
    ext = "txt" if fmt != "json" or isinstance(value, str) else "json"
    return ResultFile(step, f"{run_id}-{step}-result.{ext}", readable(value), f"Result of {step} (full)")


def result_message(run_id: str, line: str, outputs: Mapping[str, Any], formats: Mapping[str, str]
                   ) -> tuple[str, list[dict[str, Any]], list[ResultFile]]:
    """(text, blocks, files) of the thread's last message: how the run ended (`line`, safe mrkdwn) and its result."""
    blocks: list[dict[str, Any]] = [section(line)]
    files: list[ResultFile] = []
    several = len(outputs) > 1
    for step, value in outputs.items():
        shown, cut = output_blocks(value)
        room = BLOCKS_TEXT_BUDGET - 300 - text_length(blocks)
        if text_length(shown) > room:  # would not fit the message: the file has it
            shown, cut = [section(f"_The result of `{escape_mrkdwn(step)}` is in the attached file._")], True
        title = f"*Result of `{escape_mrkdwn(step)}`*" if several or cut else "*Result*"
        blocks += [context(title), *shown]
        if cut:
            files.append(_file(run_id, step, value, formats.get(step, "text")))
    text = line + "".join(f"\n{escape_mrkdwn(readable(v))[:2000]}" for v in outputs.values())
    return message_text(text), limit_blocks(blocks), files


def result_fallback(line: str, files: Sequence[ResultFile], outputs: Mapping[str, Any], run_id: str,
                    formats: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[ResultFile]]:
    """The short version Slack cannot refuse for its content: the line, and every output as a file."""
    return [section(line), section("_The result is in the attached file._")], [
        _file(run_id, step, value, formats.get(step, "text")) for step, value in outputs.items()
    ]


def status_output_lines(step: str, value: Any) -> list[dict[str, Any]]:
    """A step's output as `/overseer status RUN` shows it: cut short, whole elsewhere."""
    if value is None:
        return []
    shown, _ = output_blocks(value, room=STATUS_ROOM)
    return [context(f"output of `{escape_mrkdwn(step)}`:"), *shown]
