"""A checkpoint's messages in the run's thread: one per version, whose buttons carry that version.

A version waiting is posted once (under its own key); when it is sent back, edited into the next one,
approved by one of several, or decided, that message is updated in place: only the version waiting has
buttons.
"""

from __future__ import annotations

from typing import Any, Protocol

from agents import outbox
from agents.spec import CheckpointSpec, ModelStep, WorkflowSpec
from bot.format import readable
from bot.slack import blocks as bk
from bot.slack.poster import Delivery, Poster, Where
from storage import checkpoint_queries as cq
from storage import run_queries
from storage.db import Database


class Announcements(Protocol):
    """What a checkpoint's messages need of the announcements: the records, the poster, a note in the thread."""

    db: Database
    poster: Poster

    async def note(self, delivery: Delivery, where: Where, text: str) -> None: ...


def checkpoint_key(step: str, version: int = 1) -> str:
    """The chat message key of a checkpoint's version (v1 keeps the key it had before versions)."""
    return f"checkpoint:{step}" if version <= 1 else f"checkpoint:{step}:v{version}"


async def _view(ann: Announcements, run_id: str, step: str, version: int, output: Any,
                progress: str | None = None) -> tuple[str, list[dict[str, Any]], bool]:
    """The waiting message of `version`, drawn from what is recorded: where it came from, revisions left."""
    async with ann.db.sessions() as session:
        run = await run_queries.get_run(session=session, run_id=run_id)
        step_run = await run_queries.get_step_run(session=session, run_id=run_id, step=step)
        before = await cq.version_row(session=session, step_run_id=step_run.id, version=version - 1) if step_run else None
    spec = WorkflowSpec.model_validate(run.spec) if run else None
    cp = (spec.step(step).checkpoint if spec else None) or CheckpointSpec()
    revisable = bool(spec and isinstance(spec.step(step), ModelStep) and step_run and step_run.revisions < cp.max_revisions)
    origin = bk.revised_origin(version, before.outcome, before.by, before.note) if before else None
    approvers = list(spec.approvers) if spec else []
    return bk.checkpoint_message(run_id, step, output, approvers, version=version, revisable=revisable, origin=origin,
                                 progress=progress)


async def show_waiting(ann: Announcements, delivery: Delivery, where: Where) -> None:
    """Post a version's output with its buttons (once), attaching the whole output when it had to be cut."""
    waiting: outbox.CheckpointWaiting = delivery.announcement  # type: ignore[assignment]
    run_id, notes = str(delivery.run_id), delivery.notes
    key = checkpoint_key(waiting.step, waiting.version)
    text, blocks, cut_output = await _view(ann, run_id, waiting.step, waiting.version, waiting.output)
    if await ann.poster.recall(run_id, key) is None:
        short = [blocks[0], bk.section("_The output is in the attached file._"), blocks[-1]]
        before = len(notes)
        await ann.poster.post_once(notes, run_id, key, where=where, text=text, blocks=blocks, fallback=text,
                                   fallback_blocks=short, stamp=delivery.stamp(key))
        cut_output = cut_output or len(notes) > before
    if waiting.version > 1:
        await close_edited(ann, delivery, run_id, waiting.step, waiting.version - 1)
    if cut_output:
        fmt = "json" if waiting.format == "json" else "txt"
        version = f"-v{waiting.version}" if waiting.version > 1 else ""
        await ann.poster.attach(
            run_id, f"file:{key}", where=where, filename=f"{run_id}-{waiting.step}{version}-output.{fmt}",
            content=readable(waiting.output), title=f"Output of {waiting.step} (full)",
        )


async def show_approved(ann: Announcements, delivery: Delivery, where: Where) -> None:
    """One approval of several: the version's message says how many so far, and keeps its buttons."""
    approved: outbox.CheckpointApproved = delivery.announcement  # type: ignore[assignment]
    run_id = str(delivery.run_id)
    async with ann.db.sessions() as session:
        step_run = await run_queries.get_step_run(session=session, run_id=run_id, step=approved.step)
    posted = await ann.poster.recall(run_id, checkpoint_key(approved.step, approved.version))
    progress = bk.approval_progress(approved.approvers, approved.needed)
    if step_run is None or step_run.version != approved.version or posted is None:
        await note(ann, delivery, where, f"Checkpoint `{bk.escape_mrkdwn(approved.step)}` v{approved.version}: {progress}")
        return
    text, blocks, _ = await _view(ann, run_id, approved.step, approved.version, step_run.output, progress=progress)
    await ann.poster.update(delivery.notes, posted, text=text, blocks=blocks, fallback=text)


async def show_revising(ann: Announcements, delivery: Delivery, where: Where) -> None:
    """A version sent back with a note: its buttons give way to the note; the next version follows."""
    revising: outbox.CheckpointRevising = delivery.announcement  # type: ignore[assignment]
    run_id = str(delivery.run_id)
    async with ann.db.sessions() as session:
        step_run = await run_queries.get_step_run(session=session, run_id=run_id, step=revising.step)
        kept = await cq.version_row(session=session, step_run_id=step_run.id, version=revising.version) if step_run else None
    text, blocks = bk.revising_message(revising.step, kept.output if kept else None, version=revising.version,
                                       by=revising.by, note=revising.note, at=revising.at)
    posted = await ann.poster.recall(run_id, checkpoint_key(revising.step, revising.version))
    if posted and await ann.poster.update(delivery.notes, posted, text=text, blocks=blocks, fallback=text):
        return
    await note(ann, delivery, where, blocks[-1]["text"]["text"])


async def close_edited(ann: Announcements, delivery: Delivery, run_id: str, step: str, version: int) -> None:
    """With several approvers an edit is the next version: the edited one's buttons go."""
    async with ann.db.sessions() as session:
        step_run = await run_queries.get_step_run(session=session, run_id=run_id, step=step)
        kept = await cq.version_row(session=session, step_run_id=step_run.id, version=version) if step_run else None
    posted = await ann.poster.recall(run_id, checkpoint_key(step, version))
    if kept is None or kept.outcome != "edited" or posted is None:
        return
    text, blocks = bk.revising_message(step, kept.output, version=version, by=kept.by or "", note="", at=kept.at.isoformat(),
                                       edited=True)
    await ann.poster.update(delivery.notes, posted, text=text, blocks=blocks, fallback=text)


async def show_decided(ann: Announcements, delivery: Delivery, where: Where) -> None:
    """The decided version's buttons give way to who decided what, when."""
    decided: outbox.CheckpointDecided = delivery.announcement  # type: ignore[assignment]
    async with ann.db.sessions() as session:
        step_run = await run_queries.get_step_run(session=session, run_id=str(delivery.run_id), step=decided.step)
    text, blocks = bk.decided_message(
        decided.step, step_run.output if step_run else None, action=decided.action, by=decided.by, at=decided.at,
        reason=decided.reason, chars_changed=decided.chars_changed, chars_total=decided.chars_total,
        version=decided.version, approvers=decided.approvers,
    )
    posted = await ann.poster.recall(delivery.run_id, checkpoint_key(decided.step, decided.version))
    if posted and await ann.poster.update(delivery.notes, posted, text=text, blocks=blocks, fallback=text):
        return
    await note(ann, delivery, where, blocks[-1]["text"]["text"])


async def note(ann: Announcements, delivery: Delivery, where: Where, text: str) -> None:
    """A one-line reply in the thread (the announcements' own)."""
    await ann.note(delivery, where, text)
