"""Outbox → Slack: the delivery loop. Every post about a run comes from here, in order per stream.

Each undelivered message is claimed (so replicas never post the same one), shown by announcements.py
from the database's current state with no transaction open, then marked delivered. Slack down or rate
limiting: the message waits (next_try_at, with backoff) and goes out later, also after a restart; while
Slack is down, auth.test is asked every few seconds and, once it answers, everything waiting is due at
once. Content Slack refuses goes out as plain text (poster.py); nothing is retried forever.

Under load: deliveries run `concurrency` at a time and a slot freed is filled at once (no waiting for
the slowest of a batch); posts are paced per channel (pacing.py, within chat.postMessage's limit), and
no more of one channel's messages are claimed than its pacing lets go now (so one busy channel does not
hold every slot); the parent message is redrawn once for a run of parent-only messages, or not at all
when a later message of the run, which redraws it anyway, is already written. /metrics exports the
backlog's age (overseer_outbox_oldest_age_seconds); bench/dispatch.py measures it under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from agents import outbox
from agents.lease import default_owner
from bot.pages.links import Links
from bot.slack.announcements import Announcements
from bot.slack.poster import Delivery
from bot.slack.pacing import ChannelPacer
from bot.slack.poster import Poster, Undeliverable, describe, slack_error, slack_is_away
from storage import outbox_queries
from storage.db import Database
from storage.models import OutboxMessage, utcnow

log = structlog.get_logger("overseer.slack.dispatcher")

# Kinds whose delivery redraws the run's parent message first (announcements.show).
REDRAWS_PARENT = frozenset(outbox.KINDS) - {outbox.DigestReady.kind, outbox.StartConfirmed.kind}


@dataclass(frozen=True)
class DispatcherSettings:
    """Plain values; tests shrink the waits through these."""

    owner: str = field(default_factory=default_owner)
    poll_seconds: float = 1.0
    claim_seconds: float = 120.0  # longer than any one delivery, Retry-After waits included
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    max_tries: int = 10  # for errors that are neither Slack being away nor a content refusal
    concurrency: int = 32  # deliveries under way at once (each mostly waits on Slack; channels are paced)
    batch: int = 50
    probe_seconds: float = 2.0  # while Slack is down, how often auth.test asks whether it is back
    channel_interval: float = 1.0  # chat.postMessage: about one a second per channel ...
    channel_burst: int = 3  # ... after a short burst


class Dispatcher:
    """Delivers the outbox to Slack; run `run_forever` in the bot's loop, `kick` it after a change."""

    def __init__(self, db: Database, client: AsyncWebClient, *, settings: DispatcherSettings | None = None,
                 clock: Callable[[], datetime] = utcnow, links: Links | None = None) -> None:
        self.db = db
        self.client = client
        self.settings = settings or DispatcherSettings()
        self.clock = clock
        self.pacer = ChannelPacer(interval=self.settings.channel_interval, burst=self.settings.channel_burst)
        self.announcements = Announcements(db, Poster(db, client, pacer=self.pacer), links=links)
        self._wake = asyncio.Event()
        self._stopping = False
        self._tick_lock = asyncio.Lock()  # one tick at a time per dispatcher (the loop, or drain)
        self._down = False  # a delivery found Slack unreachable: probe until it answers
        self._next_probe = 0.0
        self._probe_wait = self.settings.probe_seconds  # before the first probe; grows while "back" does not last
        self._paced_for = 0.0  # the last tick left messages for their channel's next turn, this many seconds away
        self._inflight: set[asyncio.Task[None]] = set()  # run_forever's deliveries under way

    def kick(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Deliver until stopped, `concurrency` messages at a time: a slot freed is filled at once (a slow
        delivery holds only its own slot, not the next batch)."""
        try:
            while not self._stopping:
                self._wake.clear()
                started = 0
                try:
                    await self._probe()
                    room = self.settings.concurrency - len(self._inflight)
                    if room > 0:
                        started = await self._start(room)
                except Exception:  # noqa: BLE001 - a database hiccup must not stop delivery for good
                    log.exception("dispatcher.tick_failed")
                if started and len(self._inflight) < self.settings.concurrency:
                    continue  # more may be due now
                wait = min(self._paced_for, self.settings.poll_seconds) if self._paced_for else self.settings.poll_seconds
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)  # a delivery done wakes it too
            await asyncio.gather(*self._inflight, return_exceptions=True)  # stopping: they finish, unless cancelled
        finally:
            for task in list(self._inflight):
                task.cancel()  # cancelled: each gives its claim back
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _start(self, room: int) -> int:
        """Claim up to `room` due messages and start delivering each in a task of its own."""
        async with self._tick_lock:
            claimed, again = await self._claim(room)
        for message in claimed:
            task = asyncio.create_task(self.deliver(message, again=message.id in again), name=f"deliver:{message.id}")
            self._inflight.add(task)
            task.add_done_callback(self._delivered)
        return len(claimed)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.kick()

    async def stop(self, grace: float = 0.0) -> None:
        """Stop claiming, waiting up to `grace` seconds for the deliveries under way; one still under way
        when the loop's task is cancelled gives its claim back."""
        self._stopping = True
        self.kick()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                async with self._tick_lock:
                    pass
                if self._inflight:
                    await asyncio.wait(list(self._inflight))

    async def tick(self) -> int:
        """Claim the head message of each stream that is due and deliver them; returns how many were tried."""
        async with self._tick_lock:
            return await self._tick()

    async def _tick(self) -> int:
        claimed, again = await self._claim(self.settings.batch)
        if not claimed:
            return 0
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(message: OutboxMessage) -> None:
            async with gate:
                await self.deliver(message, again=message.id in again)

        await asyncio.gather(*(one(m) for m in claimed))
        return len(claimed)

    async def _claim(self, limit: int) -> tuple[list[OutboxMessage], set[int]]:
        """Claim up to `limit` heads of streams that are due (and whose channel can take them now); the
        claimed, and the ids of those tried or claimed before."""
        now = self.clock()
        async with self.db.sessions.begin() as session:
            heads = list(await outbox_queries.pending_outbox(session=session, now=now, limit=max(limit, self.settings.batch)))
            heads = self._paced(heads, await outbox_queries.run_channels(session=session, run_ids={m.run_id for m in heads}))[:limit]
            # Read before claiming: a row tried or claimed before may have been posted by a delivery that died.
            again = {m.id for m in heads if m.tries or m.claimed_until is not None}
            won = await outbox_queries.claim_outbox_many(
                session=session, message_ids=[m.id for m in heads], owner=self.settings.owner, now=now,
                hold_s=self.settings.claim_seconds,
            )
        return [m for m in heads if m.id in won], again

    def _paced(self, heads: list[OutboxMessage], channels: dict[str, str | None]) -> list[OutboxMessage]:
        """The heads whose channel can take a post now, at most a burst's worth per channel: the rest
        wait for a later tick, unclaimed, instead of holding a delivery slot while they wait their turn."""
        taken: dict[str, int] = {}
        chosen = []
        self._paced_for = 0.0
        for m in heads:
            channel = channels.get(m.run_id or "")
            if channel is not None:
                wait = self.pacer.delay(channel) if not taken.get(channel) else 0.0
                if taken.get(channel, 0) >= self.settings.channel_burst or wait > 0:
                    wait = wait or self.settings.channel_interval
                    self._paced_for = min(self._paced_for or wait, wait)
                    continue
                taken[channel] = taken.get(channel, 0) + 1
            chosen.append(m)
        return chosen

    async def drain(self, timeout: float = 10.0) -> None:
        """Deliver until nothing is due (tests, and a clean shutdown)."""
        async with asyncio.timeout(timeout):
            while await self.tick() or self._paced_for:
                if self._paced_for:
                    await asyncio.sleep(self._paced_for)

    async def deliver(self, message: OutboxMessage, *, again: bool = False) -> None:
        """Deliver one claimed message and record the outcome (`again`: it was tried or claimed before)."""
        notes: list[str] = []
        structlog.contextvars.bind_contextvars(outbox_id=message.id, run_id=message.run_id, kind=message.kind)
        try:
            followers: list[OutboxMessage] = []
            try:
                announcement = outbox.read(message.kind, message.payload)
            except outbox.UnknownKind:
                log.warning("dispatcher.unknown_kind", kind=message.kind)
                notes.append(f"unknown kind {message.kind!r}: not posted")
            else:
                covered = False
                if message.kind in outbox.PARENT_ONLY:
                    followers, covered = await self._parent_only_followers(message)
                if not covered:
                    await self.announcements.show(Delivery(message.id, message.run_id, announcement, notes,
                                                           written_at=message.created_at, again=again))
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
            await outbox_queries.finish_outbox(session=session, message_id=message.id, now=now, error=error)
            if followers:
                await outbox_queries.mark_outbox_done(session=session, message_ids=[f.id for f in followers], now=now)
        self._probe_wait = self.settings.probe_seconds  # Slack answers: back to the short probe
        log.info("dispatcher.delivered", coalesced=len(followers), error=error)

    async def _release(self, message: OutboxMessage) -> None:
        async with self.db.sessions.begin() as session:
            await outbox_queries.release_outbox(session=session, message_id=message.id, owner=self.settings.owner,
                                                now=self.clock())

    async def _probe(self) -> None:
        """While Slack is down, ask auth.test every probe_seconds; once it answers, all that waits is due now."""
        if not self._down or time.monotonic() < self._next_probe:
            return
        try:
            await self.client.auth_test()
        except Exception as exc:  # noqa: BLE001 - still away; a refusal (bad token) means Slack answers
            if slack_is_away(exc):
                self._next_probe = time.monotonic() + self.settings.probe_seconds
                return
        self._down = False
        # If posting fails again right away (auth.test answers, chat.* does not), probe later next time.
        self._probe_wait = min(2 * self._probe_wait, self.settings.backoff_max)
        async with self.db.sessions.begin() as session:
            due = await outbox_queries.retry_outbox_now(session=session, now=self.clock())
        log.info("dispatcher.slack_back", due=due)

    def _slack_down(self, exc: Exception) -> None:
        """A delivery could not reach Slack (not a rate limit): start probing, unless already."""
        limited = isinstance(exc, SlackApiError) and (
            getattr(exc.response, "status_code", 200) == 429 or slack_error(exc) in ("ratelimited", "rate_limited"))
        if not limited and not self._down:
            self._down = True
            self._next_probe = time.monotonic() + self._probe_wait

    async def _failed(self, message: OutboxMessage, exc: Exception) -> None:
        tries = (message.tries or 0) + 1
        away = slack_is_away(exc)
        if away:
            self._slack_down(exc)
        if not away and tries >= self.settings.max_tries:
            log.error("dispatcher.gave_up", error=describe(exc), tries=tries, exc_info=exc)
            await self._finish(message, [], error=f"gave up after {tries} tries: {describe(exc)}")
            return
        if not away and isinstance(exc, SlackApiError):
            # A refusal that is not about the content (bad channel, missing scope): trying again cannot help.
            log.warning("dispatcher.refused", error=describe(exc))
            await self._finish(message, [], error=describe(exc))
            return
        delay = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** min(tries - 1, 30)) * (0.5 + random.random() / 2)
        log.warning("dispatcher.retry_scheduled", error=describe(exc), tries=tries, delay_s=round(delay, 3),
                    exc_info=None if away else exc)
        async with self.db.sessions.begin() as session:
            await outbox_queries.retry_outbox_later(
                session=session, message_id=message.id, owner=self.settings.owner,
                next_try_at=self.clock() + timedelta(seconds=delay), error=describe(exc),
            )

    async def _parent_only_followers(self, message: OutboxMessage) -> tuple[list[OutboxMessage], bool]:
        """The parent-only messages right behind this one, which one chat.update covers, and whether the
        message after them redraws the parent anyway (then this one need not: it is shown by that one).

        Read before the parent is drawn, so anything written later is still delivered on its own.
        """
        async with self.db.sessions() as session:
            rest = await outbox_queries.outbox_followers(session=session, stream=message.stream, after_id=message.id)
        run: list[OutboxMessage] = []
        for follower in rest:
            if follower.kind not in outbox.PARENT_ONLY or follower.run_id != message.run_id:
                return run, follower.run_id == message.run_id and follower.kind in REDRAWS_PARENT
            run.append(follower)
        return run, False
