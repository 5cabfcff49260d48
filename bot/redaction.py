"""The process's redactor (agents/redact.py), built from the environment at the entry points.

`install(specs)` (the CLI's main and `serve`) reads the environment and the specs' `api_key_env`
names once; until then only the token shapes and URL passwords are redacted. Every surface
redacts through `redact` at its boundary: the log processor (bot/logs.py), the Slack poster,
ephemeral replies, CLI output (`Redacting` wraps a stream).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO, Any, TypeVar

from agents.redact import Redactor

T = TypeVar("T")

_current = Redactor()


def key_names(specs: Iterable[Any]) -> set[str]:
    """The environment variables that the specs' steps name as their API keys."""
    return {step.api_key_env for spec in specs for step in spec.steps if getattr(step, "api_key_env", None)}


def install(specs: Iterable[Any] = ()) -> Redactor:
    """Redact, from now on, the environment's secrets and the API keys `specs` name; the new redactor."""
    return use(Redactor.from_env(os.environ, key_names(specs)))


def use(redactor: Redactor) -> Redactor:
    """Make `redactor` the process's own; the one it replaces."""
    global _current
    previous, _current = _current, redactor
    return previous


def current() -> Redactor:
    """The process's redactor."""
    return _current


def redact(value: T) -> T:
    """`value` (text, or dicts and lists of it) with every secret replaced."""
    return _current(value)


def log_processor(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: every field redacted before any renderer sees it."""
    return _current.fields(event)


class Redacting:
    """A text stream that redacts what is written to it (CLI output)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(_current.text(text))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


class RedactingClient:
    """An async API client (slack_sdk's) whose every call is made with its arguments redacted."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await method(*redact(args), **redact(kwargs))

        return call
