"""What each announcement shows in Slack: one function per kind, drawn from the database's current state.

The run's parent message is redrawn for every announcement of a run; everything else goes in its
thread, posted once per key (poster.py keeps the keys).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agents import outbox
from agents.results import result_outputs
from agents.spec import WorkflowSpec
from bot.format import readable
from bot.pages.links import Links
from bot.slack import blocks as bk
from bot.slack import checkpoint_posts
from bot.slack import result_blocks as rb
from bot.slack.checkpoint_posts import checkpoint_key
from bot.slack.poster import Delivery, Poster, Stamp, Undeliverable, Where
from storage import chat_queries, run_queries
from storage.db import Database
from storage.models import OutboxMessage
from storage.status import RunStatus, StepStatus

PARENT = "parent"


def failure_key(step: str, outbox_id: int) -> str:
    return f"failure:{step}:{outbox_id}"


class Announcements:
    """Renders and posts each kind of announcement through the poster."""

    def __init__(self, db: Database, poster: Poster, *, links: Links | None = None) -> None:
        self.db = db
        self.poster = poster
        self.links = links  # the parent message links to the run's page when set with a public URL
        self._shows: dict[type[outbox.Announcement], Callable[[Delivery, Any], Awaitable[None]]] = {
            outbox.RunStarted: self._parent_only, outbox.StepStarted: self._parent_only,
            outbox.AttemptFailed: self._parent_only, outbox.StepSucceeded: self._parent_only,
            outbox.CheckpointWaiting: self._checkpoint_waiting, outbox.CheckpointDecided: self._checkpoint_decided,
            outbox.CheckpointApproved: lambda d, w: checkpoint_posts.show_approved(self, d, w),
            outbox.CheckpointRevising: lambda d, w: checkpoint_posts.show_revising(self, d, w),
            outbox.CheckpointReminder: self._reminder, outbox.CheckpointEscalated: self._escalated,
            outbox.StepFailed: self._step_failed, outbox.RunRetried: self._run_retried,
            outbox.RunFinished: self._run_finished,
        }

    async def show(self, delivery: Delivery) -> None:
        """Post (or update) whatever this announcement shows."""
        if isinstance(delivery.announcement, outbox.DigestReady):
            await self._digest(delivery, delivery.announcement)
            return
        if isinstance(delivery.announcement, outbox.StartConfirmed):
            await self._start_confirmed(delivery, delivery.announcement)
            return
        where = await self.refresh_parent(delivery.run_id, delivery.notes, stamp=delivery.stamp(PARENT))
        if where is None or delivery.run_id is None:
            return  # no channel to announce in
        await self._shows[type(delivery.announcement)](delivery, where)

    # --- the parent message -----------------------------------------------------------------------

    async def refresh_parent(self, run_id: str | None, notes: list[str], *, stamp: Stamp | None = None) -> Where | None:
        """Post or update the run's one message from the current state; None without a channel."""
        if run_id is None:
            return None
        async with self.db.sessions() as session:
            run = await run_queries.get_run(session=session, run_id=run_id)
            if run is None or not run.channel:
                return None
            steps = list(await run_queries.step_runs(session=session, run_id=run_id))
            counts: dict[str, int] = {}
            for attempt in await run_queries.attempts(session=session, run_id=run_id):
                counts[attempt.step] = counts.get(attempt.step, 0) + 1
            parent = await chat_queries.get_chat_message(session=session, run_id=run_id, key=PARENT)
        url = self.links.run_url(run_id) if self.links else None
        text, blocks = bk.parent_message(run, steps, counts, url=url)
        fallback = bk.parent_plain(run, steps)
        if parent is not None:
            where = Where(parent.channel, parent.ts)
            await self.poster.update(notes, where, text=text, blocks=blocks, fallback=fallback)
            return where  # even when gone: thread replies still land under its ts
        ts = await self.poster.post(notes, channel=run.channel, text=text, blocks=blocks, fallback=fallback, stamp=stamp)
        async with self.db.sessions.begin() as session:
            await chat_queries.put_chat_message(session=session, run_id=run_id, key=PARENT, channel=run.channel, ts=ts)
            await chat_queries.set_run_message(session=session, run_id=run_id, channel=run.channel, ts=ts)
        return Where(run.channel, ts)

    async def _parent_only(self, delivery: Delivery, where: Where) -> None:
        """Already shown: the parent message was redrawn."""

    async def note(self, delivery: Delivery, where: Where, text: str) -> None:
        """A one-line reply in the run's thread, posted once per outbox message."""
        body, blocks = bk.note(text)
        key = f"note:{delivery.id}"
        await self.poster.post_once(delivery.notes, delivery.run_id, key, where=where, text=body, blocks=blocks,
                                    fallback=body, stamp=delivery.stamp(key))

    # --- checkpoints ------------------------------------------------------------------------------

    async def _checkpoint_waiting(self, delivery: Delivery, where: Where) -> None:
        await checkpoint_posts.show_waiting(self, delivery, where)

    async def _checkpoint_decided(self, delivery: Delivery, where: Where) -> None:
        await checkpoint_posts.show_decided(self, delivery, where)

    async def _reminder(self, delivery: Delivery, where: Where) -> None:
        reminder: outbox.CheckpointReminder = delivery.announcement  # type: ignore[assignment]
        who = bk.mentions(reminder.mention) or "an approver"
        await self.note(delivery, where, f"⏰ Reminder: checkpoint `{bk.escape_mrkdwn(reminder.step)}` is still waiting for {who}.")

    async def _escalated(self, delivery: Delivery, where: Where) -> None:
        escalated: outbox.CheckpointEscalated = delivery.announcement  # type: ignore[assignment]
        who = bk.mentions(escalated.mention) or "an approver"
        text = f"⚠ Checkpoint `{bk.escape_mrkdwn(escalated.step)}` has waited too long: {who}, please decide."
        if escalated.on_timeout:
            text += f" (on timeout: {bk.escape_mrkdwn(escalated.on_timeout)})"
        await self.note(delivery, where, text)

    # --- failures ---------------------------------------------------------------------------------

    async def _people(self, run_id: str) -> list[str]:
        """The run's starter (when a person) and its approvers: who a failure must reach."""
        async with self.db.sessions() as session:
            run = await run_queries.get_run(session=session, run_id=run_id)
        if run is None:
            return []
        people = [run.started_by] if bk.mention(run.started_by).startswith("<") else []
        return list(dict.fromkeys([*people, *bk.waiting_for(run.spec or {})]))

    async def _step_failed(self, delivery: Delivery, where: Where) -> None:
        failed: outbox.StepFailed = delivery.announcement  # type: ignore[assignment]
        run_id, notes = str(delivery.run_id), delivery.notes
        key = failure_key(failed.step, delivery.id)
        people = await self._people(run_id)
        text, blocks, was_cut = bk.failure_report(run_id, failed, people)
        if await self.poster.recall(run_id, key) is None:
            short = [*blocks[:2], bk.section("_The report was too big for Slack; the input is in the attached file._"), blocks[-1]]
            before = len(notes)
            await self.poster.post_once(notes, run_id, key, where=where, text=text, blocks=blocks,
                                        fallback=bk.failure_plain(failed, people), fallback_blocks=short,
                                        outbox_id=delivery.id, stamp=delivery.stamp(key))
            if len(notes) > before:
                was_cut = {"input": True, "raw": bool(failed.last_raw_output)}
        if was_cut.get("input"):
            await self.poster.attach(run_id, f"file:{key}:input", where=where, filename=f"{run_id}-{failed.step}-input.json",
                                     content=readable(failed.input), title=f"Input of {failed.step} (full)")
        if was_cut.get("raw"):
            await self.poster.attach(run_id, f"file:{key}:raw", where=where, filename=f"{run_id}-{failed.step}-raw-output.txt",
                                     content=str(failed.last_raw_output), title=f"Last raw output of {failed.step}")

    async def _close_failure_report(self, run_id: str, step: str | None, note: str, notes: list[str]) -> None:
        """The last failure report's buttons give way to what was done about it."""
        async with self.db.sessions() as session:
            found = await chat_queries.latest_chat_message(session=session, run_id=run_id, prefix=f"failure:{step or ''}")
            origin = await session.get(OutboxMessage, found.outbox_id) if found and found.outbox_id else None
        if found is None or origin is None:
            return
        failed = outbox.read(origin.kind, origin.payload)
        people = await self._people(run_id)
        text, blocks, _ = bk.failure_report(run_id, failed, people)  # type: ignore[arg-type]
        # The mention stays out of the edited copy: people were pinged once, by the report itself.
        closed = bk.closed_report([b for i, b in enumerate(blocks) if not (i == 1 and people)], note)
        await self.poster.update(notes, Where(found.channel, found.ts), text=text, blocks=closed, fallback=note)

    async def _run_retried(self, delivery: Delivery, where: Where) -> None:
        retried: outbox.RunRetried = delivery.announcement  # type: ignore[assignment]
        edited = " with edited input" if retried.edited_input else ""
        line = f"↻ {bk.mention(retried.by)} retried step `{bk.escape_mrkdwn(retried.step)}`{edited}."
        await self._close_failure_report(str(delivery.run_id), retried.step, line, delivery.notes)
        await self.note(delivery, where, line)

    async def _run_finished(self, delivery: Delivery, where: Where) -> None:
        finished: outbox.RunFinished = delivery.announcement  # type: ignore[assignment]
        run_id = str(delivery.run_id)
        async with self.db.sessions() as session:
            run = await run_queries.get_run(session=session, run_id=run_id)
            waiting = [(s.step, s.version) for s in await run_queries.step_runs(session=session, run_id=run_id)
                       if s.status == StepStatus.AWAITING_APPROVAL]
        line = bk.finished_note(finished, run)
        if finished.status == RunStatus.SUCCEEDED and run is not None:
            await self._result(delivery, where, line, run)
            return
        if finished.status == RunStatus.CANCELLED:
            await self._close_failure_report(run_id, None, line, delivery.notes)
            for step, version in waiting:  # a checkpoint of a cancelled run can no longer be decided
                posted = await self.poster.recall(run_id, checkpoint_key(step, version))
                if posted:
                    text, blocks = bk.note(f"Checkpoint `{bk.escape_mrkdwn(step)}`: {line}")
                    await self.poster.update(delivery.notes, posted, text=text, blocks=blocks, fallback=text)
        await self.note(delivery, where, line)

    async def _result(self, delivery: Delivery, where: Where, line: str, run: Any) -> None:
        """The thread's last message of a run that succeeded: how it ended and its result, long parts as files."""
        run_id, notes = str(delivery.run_id), delivery.notes
        async with self.db.sessions() as session:
            steps = list(await run_queries.step_runs(session=session, run_id=run_id))
        spec = WorkflowSpec.model_validate(run.spec)
        outputs = result_outputs(spec, steps)
        formats = {s.name: s.output.format for s in spec.steps}
        text, blocks, files = rb.result_message(run_id, line, outputs, formats)
        key = f"note:{delivery.id}"
        if await self.poster.recall(run_id, key) is None:
            short, whole = rb.result_fallback(line, files, outputs, run_id, formats)
            before = len(notes)
            await self.poster.post_once(notes, run_id, key, where=where, text=text, blocks=blocks, fallback=text,
                                        fallback_blocks=short, stamp=delivery.stamp(key))
            files = whole if len(notes) > before else files  # refused: the short version points at every output
        for file in files:
            await self.poster.attach(run_id, f"file:result:{file.step}", where=where, filename=file.filename,
                                     content=file.content, title=file.title)

    # --- replies to one person -------------------------------------------------------------------

    async def _start_confirmed(self, delivery: Delivery, told: outbox.StartConfirmed) -> None:
        text = f"Started run `{delivery.run_id}` of *{bk.escape_mrkdwn(told.workflow)}*; follow it in <#{told.follow_in}>."
        await self.poster.whisper(channel=told.channel, user=told.user, text=text, reply_url=told.reply_url)

    # --- the digest -------------------------------------------------------------------------------

    async def _digest(self, delivery: Delivery, ready: outbox.DigestReady) -> None:
        from bot.digest import digest_message  # imported when first needed

        if not ready.channel:
            raise Undeliverable("digest without a channel")
        text, blocks = digest_message(ready.report)
        key = f"digest:{delivery.id}"
        await self.poster.post_once(delivery.notes, None, key, channel=ready.channel, text=bk.message_text(text),
                                    blocks=bk.limit_blocks(list(blocks)), fallback=bk.message_text(text),
                                    stamp=delivery.stamp(key))
