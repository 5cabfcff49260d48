"""Outbox → Slack: every post about a run comes from here, in order per stream, exactly once.

Each undelivered message is claimed (so replicas never post the same one), rendered from the database's
current state, sent without any transaction open, then marked delivered. Slack down or rate limiting:
the message waits (next_try_at, with backoff) and goes out later, also after a restart. Content Slack
refuses (`invalid_blocks`, `msg_too_long`): a plain-text version goes out instead and the error is kept in
last_error; nothing is retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from agents import outbox
from agents.engine import default_owner
from bot.format import readable
from bot.slack import blocks as bk
from storage import queries
from storage.db import Database
from storage.models import OutboxMessage, Run, StepRun, utcnow
from storage.status import RunStatus, StepStatus

log = structlog.get_logger("overseer.slack.dispatcher")

# Slack errors that say "not now" rather than "never": the message waits and is tried again.
TRANSIENT_ERRORS = frozenset({
    "ratelimited", "rate_limited", "fatal_error", "internal_error", "service_unavailable", "request_timeout",
    "invalid_auth", "not_authed", "token_revoked", "account_inactive", "team_is_restricted",
})
# Slack errors about the message's content: fall back to plain text, never retry as is.
CONTENT_ERRORS = frozenset({"invalid_blocks", "msg_too_long", "invalid_blocks_format", "invalid_attachments", "no_text"})
# Kinds that only move the parent message: consecutive ones are coalesced into one chat.update.
PARENT_ONLY = frozenset({outbox.STEP_STARTED, outbox.ATTEMPT_FAILED, outbox.STEP_SUCCEEDED})
_GONE = frozenset({"message_not_found", "cant_update_message", "channel_not_found", "is_archived", "not_in_channel"})


@dataclass(frozen=True)
class DispatcherSettings:
    """Plain values; tests shrink the waits through these."""

    owner: str = field(default_factory=default_owner)
    poll_seconds: float = 1.0
    claim_seconds: float = 120.0  # longer than any one delivery, Retry-After waits included
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    max_tries: int = 10  # for errors that are neither Slack being away nor a content refusal
    concurrency: int = 8
    batch: int = 50


class Undeliverable(Exception):
    """Slack refuses this message for good (bad channel, refused even as plain text)."""


def _slack_error(exc: SlackApiError) -> str:
    try:
        return str(exc.response.get("error") or "unknown_error")
    except Exception:  # noqa: BLE001
        return "unknown_error"


def slack_is_away(exc: BaseException) -> bool:
    """Slack away, slow or rate limiting, or the network failing: worth waiting for."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        return status == 429 or status >= 500 or _slack_error(exc) in TRANSIENT_ERRORS
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError, OSError, SlackRequestError))


def describe(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return f"slack:{_slack_error(exc)} (HTTP {getattr(exc.response, 'status_code', '?')})"
    return f"{type(exc).__name__}: {exc}"[:500]


@dataclass
class _Snapshot:
    run: Run
    steps: list[StepRun]
    counts: dict[str, int]
    parent: tuple[str, str] | None


class Dispatcher:
    """Delivers the outbox to Slack; run `run_forever` in the bot's loop, `kick` it after a change."""

    def __init__(self, db: Database, client: AsyncWebClient, *, settings: DispatcherSettings | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.client = client
        self.settings = settings or DispatcherSettings()
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        self._tick_lock = asyncio.Lock()  # one tick at a time per dispatcher (the loop, or drain)
        self._handlers: dict[str, Callable[[OutboxMessage, list[str]], Awaitable[None]]] = {
            outbox.RUN_STARTED: self._on_parent,
            outbox.STEP_STARTED: self._on_parent,
            outbox.ATTEMPT_FAILED: self._on_parent,
            outbox.STEP_SUCCEEDED: self._on_parent,
            outbox.CHECKPOINT_WAITING: self._on_checkpoint_waiting,
            outbox.CHECKPOINT_DECIDED: self._on_checkpoint_decided,
            outbox.CHECKPOINT_REMINDER: self._on_reminder,
            outbox.CHECKPOINT_ESCALATED: self._on_reminder,
            outbox.STEP_FAILED: self._on_step_failed,
            outbox.RUN_RETRIED: self._on_run_retried,
            outbox.RUN_FINISHED: self._on_run_finished,
            outbox.DIGEST: self._on_digest,
        }

    # --- the loop ---------------------------------------------------------------------------------

    def kick(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    async def run_forever(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                handled = await self.tick()
            except Exception:  # noqa: BLE001 - a database hiccup must not stop delivery for good
                log.exception("dispatcher.tick_failed")
                handled = 0
            if handled:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)

    async def stop(self) -> None:
        self._stopping = True
        self.kick()

    async def tick(self) -> int:
        """Claim the head message of each stream that is due and deliver them; returns how many were tried."""
        async with self._tick_lock:
            return await self._tick()

    async def _tick(self) -> int:
        now = self.clock()
        async with self.db.sessions.begin() as session:
            heads = list(await queries.pending_outbox(session=session, now=now, limit=self.settings.batch))
            claimed = [
                m for m in heads
                if await queries.claim_outbox(session=session, message_id=m.id, owner=self.settings.owner, now=now,
                                              hold_s=self.settings.claim_seconds)
            ]
        if not claimed:
            return 0
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(message: OutboxMessage) -> None:
            async with gate:
                await self.deliver(message)

        await asyncio.gather(*(one(m) for m in claimed))
        return len(claimed)

    async def drain(self, timeout: float = 10.0) -> None:
        """Deliver until nothing is due (tests, and a clean shutdown)."""
        async with asyncio.timeout(timeout):
            while await self.tick():
                pass

    # --- one message ------------------------------------------------------------------------------

    async def deliver(self, message: OutboxMessage) -> None:
        """Deliver one claimed message and record the outcome."""
        handler = self._handlers.get(message.kind)
        notes: list[str] = []
        structlog.contextvars.bind_contextvars(outbox_id=message.id, run_id=message.run_id, kind=message.kind)
        try:
            followers: list[OutboxMessage] = []
            if handler is None:
                log.warning("dispatcher.unknown_kind", kind=message.kind)
                notes.append(f"unknown kind {message.kind!r}: not posted")
            else:
                if message.kind in PARENT_ONLY:
                    followers = await self._parent_only_followers(message)
                await handler(message, notes)
        except asyncio.CancelledError:
            # Shutting down mid-delivery: let the message go at once instead of holding it for claim_seconds.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(message))
            raise
        except Undeliverable as exc:
            log.warning("dispatcher.gave_up", error=str(exc))
            await self._finish(message, [], error=str(exc))
        except Exception as exc:  # noqa: BLE001 - classified below, never lost
            await self._failed(message, exc)
        else:
            await self._finish(message, followers, error="; ".join(notes) or None)
        finally:
            structlog.contextvars.unbind_contextvars("outbox_id", "run_id", "kind")

    async def _finish(self, message: OutboxMessage, followers: Sequence[OutboxMessage], *, error: str | None) -> None:
        now = self.clock()
        async with self.db.sessions.begin() as session:
            await queries.finish_outbox(session=session, message_id=message.id, now=now, error=error)
            if followers:
                await queries.mark_outbox_done(session=session, message_ids=[f.id for f in followers], now=now)
        log.info("dispatcher.delivered", coalesced=len(followers), error=error)

    async def _release(self, message: OutboxMessage) -> None:
        async with self.db.sessions.begin() as session:
            await queries.release_outbox(session=session, message_id=message.id, owner=self.settings.owner)

    async def _failed(self, message: OutboxMessage, exc: Exception) -> None:
        tries = (message.tries or 0) + 1
        transient = slack_is_away(exc)
        if not transient and tries >= self.settings.max_tries:
            log.error("dispatcher.gave_up", error=describe(exc), tries=tries, exc_info=exc)
            await self._finish(message, [], error=f"gave up after {tries} tries: {describe(exc)}")
            return
        if not transient and isinstance(exc, SlackApiError):
            # A refusal that is not about the content (bad channel, missing scope): trying again cannot help.
            log.warning("dispatcher.refused", error=describe(exc))
            await self._finish(message, [], error=describe(exc))
            return
        delay = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** min(tries - 1, 30)) * (0.5 + random.random() / 2)
        log.warning("dispatcher.retry_scheduled", error=describe(exc), tries=tries, delay_s=round(delay, 3),
                    exc_info=None if transient else exc)
        async with self.db.sessions.begin() as session:
            await queries.retry_outbox_later(
                session=session, message_id=message.id, owner=self.settings.owner,
                next_try_at=self.clock() + timedelta(seconds=delay), error=describe(exc),
            )

    async def _parent_only_followers(self, message: OutboxMessage) -> list[OutboxMessage]:
        """The parent-only messages right behind this one: one chat.update covers them all.

        Read before the parent is rendered, so anything written later is still delivered on its own.
        """
        async with self.db.sessions() as session:
            rest = await queries.outbox_followers(session=session, stream=message.stream, after_id=message.id)
        run: list[OutboxMessage] = []
        for follower in rest:
            if follower.kind not in PARENT_ONLY or follower.run_id != message.run_id:
                break
            run.append(follower)
        return run

    # --- Slack calls, with the plain-text fallback ----------------------------------------------

    async def _post(self, notes: list[str], *, channel: str, text: str, blocks: list[dict[str, Any]], fallback: str,
                    thread_ts: str | None = None, fallback_blocks: list[dict[str, Any]] | None = None) -> str:
        args: dict[str, Any] = {"channel": channel, "unfurl_links": False, "unfurl_media": False}
        if thread_ts:
            args["thread_ts"] = thread_ts
        try:
            answer = await self.client.chat_postMessage(**args, text=text, blocks=blocks)
        except SlackApiError as exc:
            error = _slack_error(exc)
            if error not in CONTENT_ERRORS:
                raise
            notes.append(f"{error}: sent a plain-text version")
            log.warning("dispatcher.content_refused", error=error, messages=exc.response.get("response_metadata"))
            try:
                if fallback_blocks:
                    answer = await self.client.chat_postMessage(**args, text=fallback, blocks=fallback_blocks)
                else:
                    answer = await self.client.chat_postMessage(**args, text=bk.cut(fallback, 3900))
            except SlackApiError as again:
                if _slack_error(again) in CONTENT_ERRORS:
                    raise Undeliverable(f"{error}; the plain-text version was refused too: {_slack_error(again)}") from again
                raise
        return str(answer["ts"])

    async def _update(self, notes: list[str], *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]],
                      fallback: str) -> bool:
        """chat.update; False when the message is gone (deleted, archived channel)."""
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            error = _slack_error(exc)
            if error in _GONE:
                notes.append(f"{error}: message {ts} not updated")
                return False
            if error not in CONTENT_ERRORS:
                raise
            notes.append(f"{error}: updated with a plain-text version")
            try:
                await self.client.chat_update(channel=channel, ts=ts, text=bk.cut(fallback, 3900), blocks=[bk.section(bk.cut(fallback, 2900))])
            except SlackApiError as again:
                if _slack_error(again) in CONTENT_ERRORS | _GONE:
                    raise Undeliverable(f"{error}; the plain-text version was refused too: {_slack_error(again)}") from again
                raise
        return True

    async def _attach(self, run_id: str | None, key: str, *, channel: str, thread_ts: str | None, filename: str,
                      content: str, title: str) -> None:
        """Upload a text file into the thread once (files_upload_v2), remembered by key."""
        async with self.db.sessions() as session:
            if await queries.get_chat_message(session=session, run_id=run_id, key=key):
                return
        answer = await self.client.files_upload_v2(
            channel=channel, thread_ts=thread_ts, content=content, filename=filename, title=title,
        )
        files = answer.get("files") or [answer.get("file") or {}]
        file_id = str((files[0] or {}).get("id") or "uploaded")
        async with self.db.sessions.begin() as session:
            await queries.put_chat_message(session=session, run_id=run_id, key=key, channel=channel, ts=file_id)

    async def _remember(self, run_id: str | None, key: str, channel: str, ts: str) -> None:
        async with self.db.sessions.begin() as session:
            await queries.put_chat_message(session=session, run_id=run_id, key=key, channel=channel, ts=ts)

    async def _recall(self, run_id: str | None, key: str) -> tuple[str, str] | None:
        async with self.db.sessions() as session:
            found = await queries.get_chat_message(session=session, run_id=run_id, key=key)
            return (found.channel, found.ts) if found else None

    # --- the parent message -----------------------------------------------------------------------

    async def _snapshot(self, run_id: str) -> _Snapshot | None:
        async with self.db.sessions() as session:
            run = await queries.get_run(session=session, run_id=run_id)
            if run is None:
                return None
            steps = list(await queries.step_runs(session=session, run_id=run_id))
            counts: dict[str, int] = {}
            for attempt in await queries.attempts(session=session, run_id=run_id):
                counts[attempt.step] = counts.get(attempt.step, 0) + 1
            parent = await queries.get_chat_message(session=session, run_id=run_id, key="parent")
            return _Snapshot(run, steps, counts, (parent.channel, parent.ts) if parent else None)

    async def _refresh_parent(self, run_id: str | None, notes: list[str]) -> tuple[str, str] | None:
        """Post or update the run's one message from the current state; (channel, ts), or None without a channel."""
        if run_id is None:
            return None
        snap = await self._snapshot(run_id)
        if snap is None or not snap.run.channel:
            return None
        text, blocks = bk.parent_message(snap.run, snap.steps, snap.counts)
        fallback = bk.parent_plain(snap.run, snap.steps)
        if snap.parent is not None:
            if await self._update(notes, channel=snap.parent[0], ts=snap.parent[1], text=text, blocks=blocks, fallback=fallback):
                return snap.parent
            return snap.parent  # gone: thread replies still land under its ts
        ts = await self._post(notes, channel=snap.run.channel, text=text, blocks=blocks, fallback=fallback)
        async with self.db.sessions.begin() as session:
            await queries.put_chat_message(session=session, run_id=run_id, key="parent", channel=snap.run.channel, ts=ts)
            await queries.set_run_message(session=session, run_id=run_id, channel=snap.run.channel, ts=ts)
        return snap.run.channel, ts

    async def _thread_note(self, message: OutboxMessage, notes: list[str], where: tuple[str, str], text: str) -> None:
        """A one-line reply in the run's thread, posted once per outbox message."""
        key = f"note:{message.id}"
        if await self._recall(message.run_id, key):
            return
        body, blocks = bk.note(text)
        ts = await self._post(notes, channel=where[0], thread_ts=where[1], text=body, blocks=blocks, fallback=body)
        await self._remember(message.run_id, key, where[0], ts)

    async def _on_parent(self, message: OutboxMessage, notes: list[str]) -> None:
        await self._refresh_parent(message.run_id, notes)

    # --- checkpoints ------------------------------------------------------------------------------

    async def _on_checkpoint_waiting(self, message: OutboxMessage, notes: list[str]) -> None:
        where = await self._refresh_parent(message.run_id, notes)
        if where is None or message.run_id is None:
            return
        payload = message.payload
        step = str(payload.get("step"))
        key = f"checkpoint:{step}"
        approvers = list(payload.get("approvers") or [])
        text, blocks, cut_output = bk.checkpoint_message(message.run_id, step, payload.get("output"), approvers)
        if await self._recall(message.run_id, key) is None:
            short = [blocks[0], bk.section("_The output is in the attached file._"), blocks[-1]]
            before = len(notes)
            ts = await self._post(notes, channel=where[0], thread_ts=where[1], text=text, blocks=blocks,
                                  fallback=text, fallback_blocks=short)
            cut_output = cut_output or len(notes) > before
            await self._remember(message.run_id, key, where[0], ts)
        if cut_output:
            fmt = "json" if payload.get("format") == "json" else "txt"
            await self._attach(
                message.run_id, f"file:{key}", channel=where[0], thread_ts=where[1],
                filename=f"{message.run_id}-{step}-output.{fmt}", content=readable(payload.get("output")),
                title=f"Output of {step} (full)",
            )

    async def _on_checkpoint_decided(self, message: OutboxMessage, notes: list[str]) -> None:
        where = await self._refresh_parent(message.run_id, notes)
        if where is None or message.run_id is None:
            return
        payload = message.payload
        step = str(payload.get("step"))
        async with self.db.sessions() as session:
            step_run = await queries.get_step_run(session=session, run_id=message.run_id, step=step)
        output = step_run.output if step_run else None
        text, blocks = bk.decided_message(
            step, output, action=str(payload.get("action")), by=str(payload.get("by")), at=payload.get("at"),
            reason=payload.get("reason"), chars_changed=int(payload.get("chars_changed") or 0),
            chars_total=int(payload.get("chars_total") or 0),
        )
        posted = await self._recall(message.run_id, f"checkpoint:{step}")
        if posted and await self._update(notes, channel=posted[0], ts=posted[1], text=text, blocks=blocks, fallback=text):
            return
        await self._thread_note(message, notes, where, blocks[-1]["text"]["text"])

    async def _on_reminder(self, message: OutboxMessage, notes: list[str]) -> None:
        where = await self._refresh_parent(message.run_id, notes)
        if where is None:
            return
        payload = message.payload
        step = bk.escape_mrkdwn(payload.get("step"))
        who = bk.mentions(payload.get("mention") or []) or "an approver"
        if message.kind == outbox.CHECKPOINT_ESCALATED:
            on_timeout = payload.get("on_timeout")
            text = f"⚠ Checkpoint `{step}` has waited too long: {who}, please decide."
            if on_timeout:
                text += f" (on timeout: {bk.escape_mrkdwn(on_timeout)})"
        else:
            text = f"⏰ Reminder: checkpoint `{step}` is still waiting for {who}."
        await self._thread_note(message, notes, where, text)

    # --- failures ---------------------------------------------------------------------------------

    async def _people(self, run_id: str) -> list[str]:
        """The run's starter (when a person) and its approvers: who a failure must reach."""
        async with self.db.sessions() as session:
            run = await queries.get_run(session=session, run_id=run_id)
        if run is None:
            return []
        people = [run.started_by] if bk.mention(run.started_by).startswith("<") else []
        return list(dict.fromkeys([*people, *bk.waiting_for(run.spec or {})]))

    async def _on_step_failed(self, message: OutboxMessage, notes: list[str]) -> None:
        where = await self._refresh_parent(message.run_id, notes)
        if where is None or message.run_id is None:
            return
        payload = message.payload
        step = str(payload.get("step"))
        key = f"failure:{step}:{message.id}"
        people = await self._people(message.run_id)
        text, blocks, was_cut = bk.failure_report(message.run_id, payload, people)
        if await self._recall(message.run_id, key) is None:
            fallback = bk.failure_plain(payload, people)
            short = [*blocks[:2], bk.section("_The report was too big for Slack; the input is in the attached file._"), blocks[-1]]
            before = len(notes)
            ts = await self._post(notes, channel=where[0], thread_ts=where[1], text=text, blocks=blocks,
                                  fallback=fallback, fallback_blocks=short)
            if len(notes) > before:
                was_cut = {"input": True, "raw": bool(payload.get("last_raw_output"))}
            await self._remember(message.run_id, key, where[0], ts)
        if was_cut.get("input"):
            await self._attach(
                message.run_id, f"file:{key}:input", channel=where[0], thread_ts=where[1],
                filename=f"{message.run_id}-{step}-input.json", content=readable(payload.get("input")),
                title=f"Input of {step} (full)",
            )
        if was_cut.get("raw"):
            await self._attach(
                message.run_id, f"file:{key}:raw", channel=where[0], thread_ts=where[1],
                filename=f"{message.run_id}-{step}-raw-output.txt", content=str(payload.get("last_raw_output")),
                title=f"Last raw output of {step}",
            )

    async def _close_failure_report(self, run_id: str, step: str | None, note: str, notes: list[str]) -> None:
        """The last failure report's buttons give way to what was done about it."""
        async with self.db.sessions() as session:
            found = await queries.latest_chat_message(session=session, run_id=run_id, prefix=f"failure:{step or ''}")
            if found is None:
                return
            origin_id = found.key.rsplit(":", 1)[-1]
            origin = await session.get(OutboxMessage, int(origin_id)) if origin_id.isdigit() else None
            channel, ts = found.channel, found.ts
        if origin is None:
            return
        people = await self._people(run_id)
        text, blocks, _ = bk.failure_report(run_id, origin.payload, people)
        # The mention stays out of the edited copy: people were pinged once, by the report itself.
        closed = bk.closed_report([b for i, b in enumerate(blocks) if not (i == 1 and people)], note)
        await self._update(notes, channel=channel, ts=ts, text=text, blocks=closed, fallback=note)

    async def _on_run_retried(self, message: OutboxMessage, notes: list[str]) -> None:
        where = await self._refresh_parent(message.run_id, notes)
        if where is None or message.run_id is None:
            return
        payload = message.payload
        step = bk.escape_mrkdwn(payload.get("step"))
        edited = " with edited input" if payload.get("edited_input") else ""
        line = f"↻ {bk.mention(payload.get('by'))} retried step `{step}`{edited}."
        await self._close_failure_report(message.run_id, str(payload.get("step")), line, notes)
        await self._thread_note(message, notes, where, line)

    async def _on_run_finished(self, message: OutboxMessage, notes: list[str]) -> None:
        where = await self._refresh_parent(message.run_id, notes)
        if where is None or message.run_id is None:
            return
        payload = message.payload
        async with self.db.sessions() as session:
            run = await queries.get_run(session=session, run_id=message.run_id)
            waiting = [s.step for s in await queries.step_runs(session=session, run_id=message.run_id) if s.status == StepStatus.AWAITING_APPROVAL]
        line = bk.finished_note(payload, run)
        if payload.get("status") == RunStatus.CANCELLED:
            await self._close_failure_report(message.run_id, None, line, notes)
            for step in waiting:  # a checkpoint of a cancelled run can no longer be decided
                posted = await self._recall(message.run_id, f"checkpoint:{step}")
                if posted:
                    text, blocks = bk.note(f"Checkpoint `{bk.escape_mrkdwn(step)}`: {line}")
                    await self._update(notes, channel=posted[0], ts=posted[1], text=text, blocks=blocks, fallback=text)
        await self._thread_note(message, notes, where, line)

    # --- the digest -------------------------------------------------------------------------------

    async def _on_digest(self, message: OutboxMessage, notes: list[str]) -> None:
        from bot.digest import digest_message  # written alongside; imported when first needed

        channel = message.payload.get("channel")
        if not channel:
            raise Undeliverable("digest without a channel")
        if await self._recall(None, f"digest:{message.id}"):
            return
        text, blocks = digest_message(message.payload)
        ts = await self._post(notes, channel=str(channel), text=bk.message_text(text), blocks=bk.limit_blocks(list(blocks)),
                              fallback=bk.message_text(text))
        await self._remember(None, f"digest:{message.id}", str(channel), ts)
