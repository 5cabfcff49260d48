"""Build the Slack Web API client and the Bolt AsyncApp with every listener registered."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import structlog
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator, FixedValueRetryIntervalCalculator
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient

from agents.errors import ConfigError
from bot.slack import BotContext, actions, commands, modals
from bot.slack.errors import bolt_error_handler
from bot.slack.poster import slack_error

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

log = structlog.get_logger("overseer.slack.app")


class _SameToken(logging.Filter):
    """Drops Bolt's warning that the client's token wins over SLACK_BOT_TOKEN, which Bolt reads from the
    environment by itself: it is the same token, and the line came before every start-up error's one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


_SAME_TOKEN = _SameToken()


def build_client(token: str, *, base_url: str, retry_interval: float | None = None, timeout: int = 15) -> AsyncWebClient:
    """An AsyncWebClient that retries dropped connections, 5xx and 429 (honouring Retry-After) once each.

    `retry_interval` fixes the wait between retries (tests make it tiny); by default it backs off.
    """
    interval: RetryIntervalCalculator = (
        FixedValueRetryIntervalCalculator(retry_interval) if retry_interval is not None else BackoffRetryIntervalCalculator(backoff_factor=0.5)
    )
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
            AsyncRateLimitErrorRetryHandler(max_retry_count=1),
            AsyncServerErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
        ],
    )


def build_app(ctx: BotContext, *, signing_secret: str | None, socket_mode: bool = False) -> AsyncApp:
    """The Bolt app: signatures always verified over HTTP; listeners ack first (`run` once its run is committed)."""
    if socket_mode:
        # Socket Mode requests come over Slack's WebSocket and carry no signature (Bolt skips the check
        # for them); no HTTP route leads to Bolt then, and one that did would meet a secret nobody knows.
        signing_secret = secrets.token_hex(32)
    elif not (signing_secret and signing_secret.strip()):
        raise ConfigError("SLACK_SIGNING_SECRET is not set (needed in HTTP mode; or set SLACK_APP_TOKEN for Socket Mode)")
    logging.getLogger("slack_bolt.AsyncApp").addFilter(_SAME_TOKEN)  # once: addFilter ignores a second time
    app = AsyncApp(
        client=ctx.client,
        signing_secret=signing_secret,
        # Over HTTP, Bolt answers Slack as soon as a listener calls ack() and lets the rest run on:
        # that is what keeps acks fast while the engine works.
        process_before_response=False,
    )
    commands.register(app, ctx)
    actions.register(app, ctx)
    modals.register(app, ctx)
    app.error(bolt_error_handler)
    return app


async def socket_mode_handler(app: AsyncApp, app_token: str) -> AsyncSocketModeHandler:
    """A Socket Mode handler whose WebSocket URL Slack has already granted; a refused token is a ConfigError.

    slack_sdk's client retries every failure to connect every 10 s for ever, a refused token included,
    while the process looks healthy: asking for the URL here first lets a bad token stop the start.
    Slack unreachable is not the token's fault: the client's own retries go on then.
    """
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    url = None
    try:
        url = str((await app.client.apps_connections_open(app_token=app_token))["url"])
    except SlackApiError as exc:
        raise ConfigError(f"SLACK_APP_TOKEN: Slack refused it ({slack_error(exc)}); use an app-level token with connections:write") from None
    except Exception as exc:  # noqa: BLE001 - the network, not the token: connecting retries
        log.warning("slack.socket_mode_unreachable", error=f"{type(exc).__name__}: {exc}")
    handler = AsyncSocketModeHandler(app, app_token)
    handler.client.wss_uri = url
    return handler
