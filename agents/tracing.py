"""OpenTelemetry spans in the GenAI conventions: one per run, per step and per attempt (model call or tool call).

Optional twice over: without the `otel` extra (opentelemetry-api) nothing is imported, and until bot/
calls `enable` with a tracer provider the decorators only check one global and call straight through.
Attributes follow the GenAI semantic conventions (`gen_ai.operation.name`, `gen_ai.provider.name` and
the older `gen_ai.system`, `gen_ai.request.model`, `gen_ai.usage.*`, `error.type`), plus `overseer.*`.

The engine and the step caller carry one decorator each (`traced_run`, `traced_step`, `traced_attempt`),
so the hot path's code stays as it is; every model call also carries the run's ids as litellm metadata
(`call_metadata`, from the structlog context the engine binds).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

_tracer: Any = None  # an opentelemetry Tracer once enabled; None: tracing off, decorators call straight through
_METADATA_KEYS = ("run_id", "workflow", "step", "attempt")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def available() -> bool:
    """Whether the `otel` extra (opentelemetry-api) is installed."""
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def enable(tracer_provider: Any = None) -> bool:
    """Emit spans from now on, through `tracer_provider` (default: the global one); False without the extra."""
    global _tracer
    if not available():
        return False
    from opentelemetry import trace

    _tracer = trace.get_tracer("overseer", tracer_provider=tracer_provider)
    return True


def disable() -> None:
    """Stop emitting spans."""
    global _tracer
    _tracer = None


def call_metadata() -> dict[str, Any]:
    """run_id, workflow, step and attempt of the call being made (litellm hands them to its callbacks)."""
    bound = structlog.contextvars.get_contextvars()
    return {key: bound[key] for key in _METADATA_KEYS if bound.get(key) is not None}


def provider_of(model: str | None) -> str:
    """The provider a litellm model string names (`openai/gpt-4o` -> openai); `litellm` when it names none."""
    return model.split("/", 1)[0] if model and "/" in model else "litellm"


def _failed(span: Any, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", type(exc).__name__)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))


def _traced(name: Callable[..., str], attributes: Callable[..., dict[str, Any]],
            ended: Callable[[Any, Any], None] | None = None) -> Callable[[F], F]:
    """A decorator for an async method: a span named and attributed from its arguments, ended with its result."""
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _tracer is None:
                return await fn(*args, **kwargs)
            with _tracer.start_as_current_span(name(*args, **kwargs), attributes=attributes(*args, **kwargs),
                                               record_exception=False, set_status_on_exception=False) as span:
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    _failed(span, exc)
                    raise
                if ended is not None:
                    ended(span, result)
                return result

        return wrapper  # type: ignore[return-value]

    return decorate


# --- a run: Engine._drive(self, driving) ---------------------------------------------------------

def _run_attributes(engine: Any, driving: Any, *_: Any, **__: Any) -> dict[str, Any]:
    return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": driving.workflow,
            "overseer.run_id": driving.run_id, "overseer.workflow": driving.workflow, "overseer.mocked": bool(driving.mocked)}


traced_run = _traced(lambda engine, driving, *a, **k: f"invoke_agent {driving.workflow}", _run_attributes,
                     lambda span, status: span.set_attribute("overseer.run.status", str(status)))


# --- a step: StepCaller.call(self, run_id, spec, step, call_input, ...) -----------------------------

def _step_attributes(caller: Any, run_id: str, spec: Any, step: Any, *_: Any, **__: Any) -> dict[str, Any]:
    values = {"overseer.run_id": run_id, "overseer.workflow": spec.name, "overseer.step": step.name,
              "overseer.step.kind": step.kind, "gen_ai.agent.name": spec.name}
    if step.kind == "model":
        values |= {"gen_ai.operation.name": "chat", "gen_ai.request.model": step.model,
                   "gen_ai.provider.name": provider_of(step.model), "gen_ai.system": provider_of(step.model)}
    else:
        values |= {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": step.tool}
    return values


def _step_ended(span: Any, success: Any) -> None:
    attempt = getattr(success, "attempt", None)
    if attempt is not None:
        span.set_attribute("overseer.attempts", int(attempt.number))


traced_step = _traced(lambda caller, run_id, spec, step, *a, **k: f"step {step.name}", _step_attributes, _step_ended)


# --- an attempt: StepCaller._attempt(self, state, step, row) -----------------------------------------

def _attempt_name(caller: Any, state: Any, step: Any, row: Any, *_: Any, **__: Any) -> str:
    return f"chat {row.model}" if step.kind == "model" else f"execute_tool {row.model}"


def _attempt_attributes(caller: Any, state: Any, step: Any, row: Any, *_: Any, **__: Any) -> dict[str, Any]:
    values = {"overseer.run_id": state.run_id, "overseer.step": step.name, "overseer.attempt": int(row.number),
              "overseer.fallback_index": int(row.fallback_index or 0)}
    if step.kind == "model":
        provider = provider_of(row.model)
        return values | {"gen_ai.operation.name": "chat", "gen_ai.request.model": str(row.model),
                         "gen_ai.provider.name": provider, "gen_ai.system": provider}
    return values | {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": str(row.model)}


def _attempt_ended(span: Any, success: Any) -> None:
    attempt = getattr(success, "attempt", None)
    if attempt is None:
        return
    span.set_attribute("gen_ai.usage.input_tokens", int(attempt.tokens_in or 0))
    span.set_attribute("gen_ai.usage.output_tokens", int(attempt.tokens_out or 0))
    span.set_attribute("overseer.cost_usd", float(attempt.cost_usd or 0.0))
    if attempt.model_used:
        span.set_attribute("gen_ai.response.model", str(attempt.model_used))


traced_attempt = _traced(_attempt_name, _attempt_attributes, _attempt_ended)
