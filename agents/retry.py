"""Retry policy: tenacity with full jitter, Retry-After honoured, transient failures only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from agents.errors import StepError
from agents.spec import RetryPolicy


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may help."""
    return isinstance(exc, StepError) and exc.transient


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
    before_sleep: Callable[[RetryCallState], Awaitable[None] | None] | None = None,
) -> AsyncRetrying:
    """An AsyncRetrying for one model or tool: `policy.attempts` tries, transient failures only."""
    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=JitteredWait(policy, scale),
        retry=retry_if_exception(is_transient),
        before_sleep=before_sleep,
        reraise=True,
    )
