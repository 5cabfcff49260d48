"""structlog set-up: JSON lines (console on a terminal), run context on every line, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_PATTERNS = [
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),  # Slack bot/user tokens
    re.compile(r"xapp-[A-Za-z0-9-]+"),  # Slack app-level tokens
    re.compile(r"sk-(?:ant-)?[A-Za-z0-9_-]{6,}"),  # OpenAI / Anthropic style API keys
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
]
_SECRET_KEYS = re.compile(r"(?i)(authorization|api[_-]?key|token|secret|password)")


def redact_text(text: str) -> str:
    """Text with tokens and keys replaced by [REDACTED]."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


def _redact(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEYS.search(key) and isinstance(value, (str, bytes)) and value:
        return "[REDACTED]"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


def redact_processor(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor that redacts secrets in every field, before any renderer sees them."""
    return {k: _redact(v, k) for k, v in event.items()}


def configure_logging(*, fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """JSON lines on stdout (console when stdout is a terminal and fmt is auto); litellm kept quiet."""
    stream = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Standard-library loggers (litellm, httpx, slack_bolt, uvicorn) go to stderr at warning and up;
    # litellm's own chatter never reaches stdout.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
