"""structlog set-up: JSON lines (console on a terminal), run context on every line, secrets redacted
(bot.redaction) from every line, the standard library's too."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from bot.redaction import Redacting, log_processor, redact


class _RedactingFormatter(logging.Formatter):
    """Standard-library records (litellm, httpx, slack_bolt, uvicorn) redacted once formatted, traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def underneath(stream: Any) -> Any:
    """The stream below a redacting one (the CLI's): log lines are redacted once, by their processor."""
    return stream.stream if isinstance(stream, Redacting) else stream


def configure_logging(*, fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """JSON lines on stdout (console when stdout is a terminal and fmt is auto); litellm kept quiet."""
    stream = underneath(stream or sys.stdout)
    use_console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            log_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Standard-library loggers (litellm, httpx, slack_bolt, uvicorn) go to stderr at warning and up;
    # litellm's own chatter never reaches stdout.
    handler = logging.StreamHandler(underneath(sys.stderr))
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
