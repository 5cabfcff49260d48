"""Revise with a note: what a revised step is called with, and the messages the model then sees.

A revision rides the step's `input_override` (the engine calls a step with it when set): the input the
last version was made from, plus each earlier version's output and the note that sent it back, plus the
version the re-run makes. So the engine needs no state of its own for it, and a crash mid-revision
re-runs the same revision.
"""

from __future__ import annotations

from typing import Any

from agents.text import as_text

REVISIONS = "revisions"
VERSION = "version"


def revised_input(previous_input: Any, *, output: Any, note: str, by: str, version: int) -> dict[str, Any]:
    """The input of the re-run making `version`: the last one's, with its output and the note appended."""
    base = dict(previous_input) if isinstance(previous_input, dict) else {"prompt": as_text(previous_input)}
    rounds = [*list(base.get(REVISIONS) or []), {"output": as_text(output), "note": note, "by": by}]
    return {**base, REVISIONS: rounds, VERSION: version}


def version_of(call_input: Any) -> int:
    """The checkpoint version a step's input makes (1 unless it is a revision)."""
    if isinstance(call_input, dict) and isinstance(call_input.get(VERSION), int):
        return int(call_input[VERSION])
    return 1


def carry(previous_input: Any, new_input: Any) -> Any:
    """A person's edited input for a retry keeps the revision it retries (its notes and version)."""
    if not (isinstance(previous_input, dict) and isinstance(new_input, dict) and REVISIONS in previous_input):
        return new_input
    return {**new_input, REVISIONS: previous_input[REVISIONS], VERSION: previous_input.get(VERSION)}


def revision_messages(call_input: Any) -> list[dict[str, str]]:
    """Each earlier version as the model's own answer, then the approver's note on it, in order."""
    rounds = call_input.get(REVISIONS) if isinstance(call_input, dict) else None
    messages: list[dict[str, str]] = []
    for item in rounds or []:
        messages.append({"role": "assistant", "content": str(item.get("output") or "")})
        messages.append({"role": "user", "content": (
            f"A reviewer sent this answer back with a note:\n{item.get('note') or ''}\n\n"
            "Answer again in full, with the note taken into account."
        )})
    return messages
