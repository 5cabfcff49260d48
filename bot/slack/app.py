"""Build the Slack Web API client and the Bolt AsyncApp with every listener registered."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator, FixedValueRetryIntervalCalculator
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import BotContext, actions, commands, modals
from bot.slack.errors import bolt_error_handler


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
    """The Bolt app: signatures always verified over HTTP; listeners ack first and work after the ack."""
    app = AsyncApp(
        client=ctx.client,
        # Socket Mode requests carry no signature (Bolt skips the check for them); HTTP ones always do.
        signing_secret=signing_secret or ("socket-mode" if socket_mode else None),
        # Over HTTP, Bolt answers Slack as soon as a listener calls ack() and lets the rest run on:
        # that is what keeps acks fast while the engine works.
        process_before_response=False,
    )
    commands.register(app, ctx)
    actions.register(app, ctx)
    modals.register(app, ctx)
    app.error(bolt_error_handler)
    return app
