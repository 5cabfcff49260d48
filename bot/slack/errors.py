"""The one translation of errors into what a Slack user reads (ephemeral); never a traceback."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from slack_sdk.web.async_client import AsyncWebClient

from agents.errors import (
    AlreadyDecided,
    ContractViolation,
    DatabaseUnavailable,
    InvalidInputs,
    InvalidState,
    NotAllowed,
    OverseerError,
    StaleVersion,
    UnknownRun,
    UnknownWorkflow,
    UserInputError,
)
from bot.redaction import redact
from bot.slack.blocks import mention
from bot.slack.mrkdwn import cut, escape_mrkdwn
from storage.status import Action

log = structlog.get_logger("overseer.slack")


class Hinted(UserInputError):
    """A user error with a line on how to write it right (the hint is trusted mrkdwn)."""

    def __init__(self, error: OverseerError, hint: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.hint = hint
        self.code = error.code


_PREFIX: list[tuple[type[BaseException], str]] = [
    (AlreadyDecided, ""),
    (StaleVersion, "Too late: "),
    (NotAllowed, "Not allowed: "),
    (UnknownWorkflow, "Unknown workflow: "),
    (UnknownRun, "Unknown run: "),
    (InvalidInputs, "Bad input: "),
    (ContractViolation, ""),
    (InvalidState, "Can't do that now: "),
    (UserInputError, ""),
]


def user_message(exc: BaseException) -> str:
    """What a person is told about `exc` (safe mrkdwn: the error's own words are escaped)."""
    if isinstance(exc, Hinted):
        return f"{user_message(exc.error)}\n{exc.hint}"
    if isinstance(exc, AlreadyDecided):
        return f"Too late: {mention(exc.decided_by)} {Action(exc.action).past} this checkpoint first."
    if isinstance(exc, UserInputError):
        prefix = next(p for kind, p in _PREFIX if isinstance(exc, kind))
        return prefix + escape_mrkdwn(cut(str(exc), 2500))
    if isinstance(exc, DatabaseUnavailable):
        return "The database is not answering right now; try again in a minute."
    ref = secrets.token_hex(3)
    log.error("slack.unexpected_error", ref=ref, error_type=type(exc).__name__, error=str(exc), exc_info=exc)
    return f"Something went wrong on our side (ref `{ref}`); it has been logged. Try again, or ask whoever runs Overseer."


def inline_message(exc: BaseException) -> str:
    """What a modal shows under an input (plain text, so nothing to escape)."""
    if isinstance(exc, UserInputError):
        return redact(cut(str(exc), 1900))
    return redact(cut(user_message(exc), 1900))


async def tell(
    client: AsyncWebClient, *, channel: str | None, user: str | None, text: str,
    blocks: list[dict[str, Any]] | None = None, response_url: str | None = None,
) -> None:
    """An ephemeral answer to one person (a reply, not an announcement); failures are only logged.

    chat.postEphemeral first; where the bot is not in the channel, the request's response_url (which
    works anywhere) instead.
    """
    text, blocks = redact(text), redact(blocks)
    if channel and user:
        try:
            if blocks:
                await client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
            else:
                await client.chat_postEphemeral(channel=channel, user=user, text=text)
            return
        except Exception as exc:  # noqa: BLE001 - try the response_url, else the answer is lost (the work is not)
            log.warning("slack.ephemeral_failed", channel=channel, user=user, error=str(exc))
    if response_url:
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        try:
            await AsyncWebhookClient(response_url).send(
                text=text, blocks=blocks, response_type="ephemeral", replace_original=False,
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("slack.response_url_failed", user=user, error=str(exc))


@asynccontextmanager
async def answering(
    client: AsyncWebClient, *, channel: str | None, user: str | None, response_url: str | None = None
) -> AsyncIterator[None]:
    """Run a handler's work; any error becomes one ephemeral message to the person who asked."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the one place errors become user text
        if isinstance(exc, OverseerError):
            log.info("slack.user_error", code=exc.code, user=user, error=str(exc))
        await tell(client, channel=channel, user=user, text=user_message(exc), response_url=response_url)


async def bolt_error_handler(error: Exception, body: dict[str, Any]) -> None:
    """Last resort for errors that escape a listener (after the ack): logged, never shown raw."""
    log.error("slack.listener_error", error_type=type(error).__name__, error=str(error),
              request_type=(body or {}).get("type") or (body or {}).get("command"), exc_info=error)
