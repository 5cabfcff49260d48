"""Slack calls for the outbox: post, update and attach, each at most once per key, with a plain-text
fallback for content Slack refuses. What each call says is decided elsewhere (announcements.py).

Every post carries message metadata naming its outbox row and key (a Stamp). A delivery that may have
posted before it died (its row was tried or claimed before) looks for that stamp in the channel or
thread first, and records the message it finds instead of posting it again.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from agents import outbox
from bot.redaction import RedactingClient
from bot.slack import blocks as bk
from bot.slack.pacing import ChannelPacer
from storage import chat_queries
from storage.db import Database

log = structlog.get_logger("overseer.slack.poster")

# Slack errors that say "not now" rather than "never": the message waits and is tried again.
AWAY_ERRORS = frozenset({
    "ratelimited", "rate_limited", "fatal_error", "internal_error", "service_unavailable", "request_timeout",
    "invalid_auth", "not_authed", "token_revoked", "account_inactive", "team_is_restricted",
})
# Slack errors about the message's content: fall back to plain text, never retry as is.
CONTENT_ERRORS = frozenset({
    "invalid_blocks", "msg_too_long", "msg_blocks_too_long", "invalid_blocks_format", "invalid_attachments", "no_text",
})
# The message to update is no longer there.
GONE_ERRORS = frozenset({"message_not_found", "cant_update_message", "channel_not_found", "is_archived", "not_in_channel"})
FALLBACK_TEXT = 3900
EVENT_TYPE = "overseer_post"  # the metadata event type of every post
LOOKBACK_S = 300.0  # a stamped post is looked for from this long before its outbox row was written (clock skew)
LOOKUP_PAGES = 5


class Undeliverable(Exception):
    """Slack refuses this message for good (bad channel, refused even as plain text)."""


def slack_error(exc: SlackApiError) -> str:
    """The `error` field of a Web API refusal."""
    try:
        return str(exc.response.get("error") or "unknown_error")
    except Exception:  # noqa: BLE001
        return "unknown_error"


def slack_is_away(exc: BaseException) -> bool:
    """Slack away, slow or rate limiting, or the network failing: worth waiting for."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        return status == 429 or status >= 500 or slack_error(exc) in AWAY_ERRORS
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError, OSError, SlackRequestError))


def describe(exc: BaseException) -> str:
    """A delivery failure in one line, for logs and the outbox row."""
    if isinstance(exc, SlackApiError):
        return f"slack:{slack_error(exc)} (HTTP {getattr(exc.response, 'status_code', '?')})"
    return f"{type(exc).__name__}: {exc}"[:500]


@dataclass(frozen=True)
class Where:
    """A message in Slack: its channel and ts (a thread's parent, for replies)."""

    channel: str
    ts: str


@dataclass(frozen=True)
class Stamp:
    """What a post carries in its metadata so that a later delivery can find it: outbox row, run, key."""

    outbox_id: int
    run_id: str | None
    key: str
    since: datetime | None = None  # when the outbox row was written: the post is not older
    look_first: bool = False  # an earlier delivery of the row may have posted it and died before recording

    def metadata(self) -> dict[str, Any]:
        """chat.postMessage's `metadata`."""
        payload: dict[str, Any] = {"outbox_id": self.outbox_id, "key": self.key}
        if self.run_id:
            payload["run_id"] = self.run_id
        return {"event_type": EVENT_TYPE, "event_payload": payload}

    def matches(self, message: dict[str, Any]) -> bool:
        """Whether a message from conversations.history/replies was posted with this stamp."""
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        return (metadata.get("event_type") == EVENT_TYPE and str(payload.get("outbox_id")) == str(self.outbox_id)
                and payload.get("key") == self.key and payload.get("run_id") == self.run_id)

    def oldest(self) -> str | None:
        """conversations.history/replies' `oldest` for the search."""
        if self.since is None:
            return None
        since = self.since if self.since.tzinfo else self.since.replace(tzinfo=UTC)
        return f"{since.timestamp() - LOOKBACK_S:.6f}"


def single_shot(client: AsyncWebClient) -> AsyncWebClient:
    """`client` retrying only 429s in place: after a dropped connection or a 5xx Slack may have posted,
    so the outbox tries again later, looking for the stamp first, instead of slack_sdk posting blind."""
    posting = copy.copy(client)
    posting.retry_handlers = [h for h in client.retry_handlers if isinstance(h, AsyncRateLimitErrorRetryHandler)]
    return posting


class Poster:
    """Web API calls remembered in chat_messages by (run, key), so a redelivery does not post twice."""

    def __init__(self, db: Database, client: AsyncWebClient, *, pacer: ChannelPacer | None = None) -> None:
        self.db = db
        self.pacer = pacer or ChannelPacer(interval=0.0)
        # The one boundary: text, blocks and files go out redacted.
        self.client = RedactingClient(client)
        self.posting = RedactingClient(single_shot(client))

    async def post(self, notes: list[str], *, channel: str, text: str, blocks: list[dict[str, Any]], fallback: str,
                   thread_ts: str | None = None, fallback_blocks: list[dict[str, Any]] | None = None,
                   stamp: Stamp | None = None) -> str:
        """chat.postMessage; refused content goes out as `fallback_blocks` or plain text (noted). The ts.

        With a `stamp` that says to look first, a message Slack already has with it is returned instead.
        """
        args: dict[str, Any] = {"channel": channel, "unfurl_links": False, "unfurl_media": False}
        if thread_ts:
            args["thread_ts"] = thread_ts
        if stamp is not None:
            if stamp.look_first and (found := await self.find(stamp, channel=channel, thread_ts=thread_ts)):
                return found
            args["metadata"] = stamp.metadata()
        try:
            answer = await self._paced_post(args | {"text": text, "blocks": blocks})
        except SlackApiError as exc:
            error = _content_error(exc, notes, "sent a plain-text version")
            try:
                if fallback_blocks:
                    answer = await self._paced_post(args | {"text": fallback, "blocks": fallback_blocks})
                else:
                    answer = await self._paced_post(args | {"text": bk.cut(fallback, FALLBACK_TEXT)})
            except SlackApiError as again:
                _refused_again(error, again, CONTENT_ERRORS)
                raise
        return str(answer["ts"])

    async def _paced_post(self, args: dict[str, Any]) -> Any:
        """chat.postMessage in the channel's turn (pacing.py); a call Slack never answered gives it back."""
        await self.pacer.turn(args["channel"])
        try:
            return await self.posting.chat_postMessage(**args)
        except Exception as exc:
            if slack_is_away(exc) and not (isinstance(exc, SlackApiError) and exc.response.status_code == 429):
                self.pacer.refund(args["channel"])
            raise

    async def find(self, stamp: Stamp, *, channel: str, thread_ts: str | None) -> str | None:
        """The ts of the message posted with `stamp` in the channel (or thread), if Slack has one.

        None too when Slack will not let us look (no history scope, a channel the bot is not in): the
        message is then posted again, as before the stamps.
        """
        params: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": 200, "oldest": stamp.oldest()}
        try:
            for _ in range(LOOKUP_PAGES):
                if thread_ts:
                    page = await self.client.conversations_replies(ts=thread_ts, **params)
                else:
                    page = await self.client.conversations_history(**params)
                found = next((m for m in page.get("messages") or [] if stamp.matches(m)), None)
                if found is not None:
                    log.info("poster.found_posted", key=stamp.key, ts=found.get("ts"))
                    return str(found["ts"])
                params["cursor"] = (page.get("response_metadata") or {}).get("next_cursor")
                if not params["cursor"]:
                    return None
        except SlackApiError as exc:
            if slack_is_away(exc):
                raise
            log.warning("poster.lookup_refused", key=stamp.key, error=describe(exc))
        return None

    async def update(self, notes: list[str], where: Where, *, text: str, blocks: list[dict[str, Any]], fallback: str) -> bool:
        """chat.update; False when the message is gone (deleted, archived channel)."""
        try:
            await self.client.chat_update(channel=where.channel, ts=where.ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            if slack_error(exc) in GONE_ERRORS:
                notes.append(f"{slack_error(exc)}: message {where.ts} not updated")
                return False
            error = _content_error(exc, notes, "updated with a plain-text version")
            try:
                await self.client.chat_update(channel=where.channel, ts=where.ts, text=bk.cut(fallback, FALLBACK_TEXT),
                                              blocks=[bk.section(bk.cut(fallback, 2900))])
            except SlackApiError as again:
                _refused_again(error, again, CONTENT_ERRORS | GONE_ERRORS)
                raise
        return True

    async def post_once(self, notes: list[str], run_id: str | None, key: str, *, where: Where | None = None,
                        channel: str | None = None, outbox_id: int | None = None, stamp: Stamp | None = None,
                        **message: Any) -> Where:
        """Post (a reply in `where`'s thread, or a message in `channel`) unless (run, key) was posted already."""
        found = await self.recall(run_id, key)
        if found is not None:
            return found
        target = where.channel if where else str(channel)
        ts = await self.post(notes, channel=target, thread_ts=where.ts if where else None, stamp=stamp, **message)
        await self.remember(run_id, key, Where(target, ts), outbox_id=outbox_id)
        return Where(target, ts)

    async def whisper(self, *, channel: str | None, user: str, text: str, reply_url: str | None) -> None:
        """An ephemeral message to one person: chat.postEphemeral, or where Slack refuses it (the bot is
        not in the channel) the request's response_url. Slack away raises, so the outbox tries again."""
        if channel:
            try:
                await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
                return
            except SlackApiError as exc:
                if slack_is_away(exc) or not reply_url:
                    raise
                log.info("poster.ephemeral_refused", error=slack_error(exc))
        if not reply_url:
            raise Undeliverable("nowhere to reply: no channel and no response_url")
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        answer = await AsyncWebhookClient(reply_url).send(text=text, response_type="ephemeral", replace_original=False)
        if answer.status_code == 429 or answer.status_code >= 500:
            raise ConnectionError(f"response_url answered HTTP {answer.status_code}")
        if answer.status_code != 200:
            raise Undeliverable(f"response_url refused the reply: HTTP {answer.status_code} {answer.body[:200]}")

    async def attach(self, run_id: str | None, key: str, *, where: Where, filename: str, content: str, title: str) -> None:
        """Upload a text file into the thread once (files_upload_v2), remembered by key."""
        if await self.recall(run_id, key):
            return
        answer = await self.client.files_upload_v2(
            channel=where.channel, thread_ts=where.ts, content=content, filename=filename, title=title,
        )
        files = answer.get("files") or [answer.get("file") or {}]
        await self.remember(run_id, key, Where(where.channel, str((files[0] or {}).get("id") or "uploaded")))

    async def remember(self, run_id: str | None, key: str, where: Where, *, outbox_id: int | None = None) -> None:
        """Record what was posted for (run, key)."""
        async with self.db.sessions.begin() as session:
            await chat_queries.put_chat_message(
                session=session, run_id=run_id, key=key, channel=where.channel, ts=where.ts, outbox_id=outbox_id,
            )

    async def recall(self, run_id: str | None, key: str) -> Where | None:
        """Where (run, key) was posted, if it was."""
        async with self.db.sessions() as session:
            found = await chat_queries.get_chat_message(session=session, run_id=run_id, key=key)
        return Where(found.channel, found.ts) if found else None


def _content_error(exc: SlackApiError, notes: list[str], what: str) -> str:
    """The refusal's error if it is about the content (noted), else re-raise it."""
    error = slack_error(exc)
    if error not in CONTENT_ERRORS:
        raise exc
    notes.append(f"{error}: {what}")
    log.warning("dispatcher.content_refused", error=error, messages=exc.response.get("response_metadata"))
    return error


def _refused_again(first: str, again: SlackApiError, final: frozenset[str]) -> None:
    if slack_error(again) in final:
        raise Undeliverable(f"{first}; the plain-text version was refused too: {slack_error(again)}") from again


@dataclass(frozen=True)
class Delivery:
    """One outbox row being delivered: its id, run, typed announcement, and notes for last_error."""

    id: int
    run_id: str | None
    announcement: outbox.Announcement
    notes: list[str]
    written_at: datetime | None = None
    again: bool = False  # tried or claimed before: what it posts may be in Slack already

    def stamp(self, key: str) -> Stamp:
        """The metadata stamp of a post made for this row under `key`."""
        return Stamp(self.id, self.run_id, key, since=self.written_at, look_first=self.again)
