"""Retry policy: tenacity with full jitter, Retry-After honoured up to the step's max_delay, transient
failures only. Every wait is bounded: a server asking for more than max_delay gets no retry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from agents.errors import StepError
from agents.spec import RetryPolicy


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may help."""
    return isinstance(exc, StepError) and exc.transient


def waits_too_long(exc: BaseException, policy: RetryPolicy) -> bool:
    """Whether the server asked for a longer wait (Retry-After) than the step's max_delay allows."""
    retry_after = getattr(exc, "retry_after", None)
    return retry_after is not None and retry_after > policy.max_delay


class JitteredWait:
    """Full-jitter exponential backoff, never shorter than the server's Retry-After."""

    def __init__(self, policy: RetryPolicy, scale: float) -> None:
        self._jitter = wait_random_exponential(multiplier=policy.initial_delay, max=policy.max_delay)
        self._scale = scale

    def __call__(self, state: RetryCallState) -> float:
        delay = self._jitter(state) * self._scale
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        # Retry-After is the server's demand, not our policy: it is not scaled down.
        return max(delay, retry_after) if retry_after else delay


def retrying(
    policy: RetryPolicy,
    *,
    scale: float,
    attempts: int | None = None,
    before_sleep: Callable[[RetryCallState], Awaitable[None] | None] | None = None,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
) -> AsyncRetrying:
    """An AsyncRetrying for one model or tool: `attempts` tries (default the policy's), transient
    failures only, never a wait past max_delay; `sleep` waits out the backoff (agents.slots.wait_out)."""
    kwargs: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts if attempts is None else attempts),
        wait=JitteredWait(policy, scale),
        retry=retry_if_exception(lambda exc: is_transient(exc) and not waits_too_long(exc, policy)),
        before_sleep=before_sleep,
        reraise=True,
        **kwargs,
    )
