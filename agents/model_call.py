"""The one place that talks to models: a single litellm call, its errors sorted into transient or not."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from agents import tracing
from agents.errors import (
    CallTimeout,
    ContentRefused,
    MissingCredentials,
    PermanentError,
    RateLimited,
    StepError,
    TransientError,
)

# How a missing key is reported (OpenAI's SDK says so in what litellm turns into a 500; others in a 401).
_NO_KEY = re.compile(r"missing credentials|missing [\w ]*api[ _]key|api_key client option must be set", re.IGNORECASE)


MOCK_MODEL = "mock"  # the model_used a mocked run records


@dataclass(frozen=True)
class ModelResult:
    """What one successful model call returned."""

    content: str
    model_used: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float


_callbacks: list[Any] = []  # litellm callbacks bot/ switched on (use_callbacks), set when litellm is imported


def use_callbacks(callbacks: list[Any]) -> None:
    """Hand litellm these callbacks ("langfuse", "langsmith", ... or CustomLogger objects) for every call."""
    _callbacks[:] = list(callbacks)
    if _litellm.cache_info().currsize:  # already imported: now; else on first use (--help stays fast)
        _set_callbacks(_litellm())


def _set_callbacks(lite: Any) -> None:
    lite.success_callback = list(_callbacks)
    lite.failure_callback = list(_callbacks)


@lru_cache(maxsize=1)
def _litellm() -> Any:
    # Imported on first use: it takes seconds, and `overseer --help` must answer fast.
    # Without the local cost map litellm fetches its price list from the internet on import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if _callbacks:
        _set_callbacks(litellm)
    return litellm


async def warm_up() -> None:
    """Pay litellm's import and first-call costs now (no network): they block the loop for seconds."""
    lite = await asyncio.to_thread(_litellm)
    await lite.acompletion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "warm-up"}], mock_response="ok")
    import openai

    client = openai.AsyncOpenAI(api_key="sk-warm-up", base_url="http://127.0.0.1:9/v1")
    _ = client.chat.completions  # the SDK's resources load on first access
    await client.close()


def _retry_after(exc: Exception) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def missing_keys(model: str, *, api_key: str | None = None, api_base: str | None = None) -> list[str]:
    """The environment variables litellm wants for `model` and does not find (litellm.validate_environment)."""
    try:
        found = _litellm().validate_environment(model=model, api_key=api_key, api_base=api_base)
    except Exception:  # noqa: BLE001 - a model litellm cannot place: nothing to name
        return []
    return [str(key) for key in found.get("missing_keys") or []]


def known_model(model: str) -> bool:
    """Whether litellm knows `model` (a provider it can call, a price it can charge): a misspelt name is not."""
    try:
        _litellm().get_model_info(model)
    except Exception:  # noqa: BLE001 - not mapped, or no provider at all
        return False
    return True


@dataclass(frozen=True)
class _Key:
    """Where a call's API key came from, for naming it when it is missing or refused."""

    env: str | None = None  # the step's api_key_env
    given: bool = False  # whether that variable held a key (else litellm looked up the provider's own)
    api_base: str | None = None


def _credentials_error(lite: Any, exc: Exception, message: str, *, model: str | None, key: _Key) -> MissingCredentials | None:
    """A missing or refused API key, named: the step's api_key_env, or the provider's variables."""
    missing = bool(_NO_KEY.search(str(exc)))
    if not missing and not (isinstance(exc, lite.AuthenticationError) or getattr(exc, "status_code", None) == 401):
        return None
    what = model or "the model"
    if key.env and not key.given:
        refused = "" if missing else f"; the provider's own key was refused: {message}"
        return MissingCredentials(f"{key.env} (the step's api_key_env) is not set: no API key for {what}{refused}")
    if key.env:
        return MissingCredentials(f"{what} refused the API key in {key.env} (the step's api_key_env): {message}")
    names = missing_keys(model, api_base=key.api_base) if model and missing else []
    if names:
        return MissingCredentials(f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} not set: no API key for {what}")
    if missing:
        return MissingCredentials(f"no API key for {what}: {message}")
    return MissingCredentials(f"{what} refused its API key (the provider's variable; or name one with api_key_env): {message}")


def classify(exc: Exception, *, model: str | None = None, key: _Key | None = None) -> StepError:
    """A litellm or transport exception as a typed StepError: transient ones are worth a retry.

    A missing or refused key is never transient (MissingCredentials names the variable to set).
    """
    if isinstance(exc, StepError):
        return exc
    lite = _litellm()
    name = type(exc).__name__
    message = f"{name}: {str(exc)[:500]}"
    credentials = _credentials_error(lite, exc, message, model=model, key=key or _Key())
    if credentials is not None:
        return credentials
    if isinstance(exc, (lite.Timeout, TimeoutError)):
        return CallTimeout(message)
    # Newer litellm releases raise a plain BadRequestError that keeps the provider's code.
    if isinstance(exc, lite.ContentPolicyViolationError) or getattr(exc, "code", None) == "content_policy_violation":
        return ContentRefused(message)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, lite.RateLimitError) or status == 429:
        return RateLimited(message, retry_after=_retry_after(exc))
    if isinstance(exc, lite.APIConnectionError) and status in (None, 500):
        return TransientError(message)
    if isinstance(status, int):
        if status in (408, 409) or status >= 500:
            return TransientError(message)
        return PermanentError(message)
    if isinstance(exc, (ConnectionError, OSError)):
        return TransientError(message)
    return TransientError(message)


def _cost(lite: Any, response: Any) -> float:
    """What the call cost: litellm prices every response it returns (`response_cost`); computing it a
    second time is only for a response that came without it."""
    hidden = getattr(response, "_hidden_params", None)
    priced = hidden.get("response_cost") if isinstance(hidden, dict) else None
    if priced is not None:
        try:
            return float(priced)
        except (TypeError, ValueError):
            pass
    try:
        return float(lite.completion_cost(completion_response=response) or 0.0)
    except Exception:  # noqa: BLE001 - an unpriced model costs what we cannot know: record 0
        return 0.0


def estimate_cost(model: str, messages: list[dict[str, str]], max_tokens: int | None) -> float:
    """What a call will cost at least: its prompt, plus max_tokens of answer when set."""
    lite = _litellm()
    try:
        prompt_tokens = lite.token_counter(model=model, messages=messages)
        cost_in, cost_out = lite.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=max_tokens or 0)
        return float(cost_in + cost_out)
    except Exception:  # noqa: BLE001 - unknown price: nothing to estimate
        return 0.0


async def complete(
    model: str,
    messages: list[dict[str, str]],
    *,
    timeout: float,
    api_base: str | None = None,
    api_key: str | None = None,
    key_env: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    mock: str | None = None,
) -> ModelResult:
    """One chat completion, with litellm's and the SDK's own retries off: our retry loop counts.

    `key_env` names where `api_key` came from (the step's api_key_env), for the error when it is missing.
    With `mock` (a mocked run), that text is the answer: no provider is called, nothing is spent.
    """
    if mock is not None:
        return ModelResult(content=mock, model_used=MOCK_MODEL, tokens_in=0, tokens_out=0, cost_usd=0.0, latency_ms=0.0)
    lite = _litellm()
    kwargs: dict[str, Any] = {"num_retries": 0, "max_retries": 0, "timeout": timeout}
    for key, value in (("api_base", api_base), ("api_key", api_key), ("temperature", temperature), ("max_tokens", max_tokens)):
        if value is not None:
            kwargs[key] = value
    started = time.perf_counter()
    try:  # metadata: the run, workflow, step and attempt, for litellm's callbacks (Langfuse, LangSmith, ...)
        response = await lite.acompletion(model=model, messages=messages, metadata=tracing.call_metadata(), **kwargs)
    except Exception as exc:  # noqa: BLE001 - every failure is sorted into a typed StepError
        raise classify(exc, model=model, key=_Key(key_env, api_key is not None, api_base)) from exc
    latency = (time.perf_counter() - started) * 1000
    try:
        content = response.choices[0].message.content or ""
    except (AttributeError, IndexError) as exc:
        raise TransientError(f"malformed response: {exc}") from exc
    usage = getattr(response, "usage", None)
    return ModelResult(
        content=content,
        model_used=getattr(response, "model", None) or model,
        tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
        tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=_cost(lite, response),
        latency_ms=latency,
    )
