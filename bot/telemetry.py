"""Traces and model-call callbacks, switched on from settings at start-up (serve and every command).

OpenTelemetry spans (agents/tracing.py) are exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is
set and the `otel` extra is installed; litellm callbacks named in OVERSEER_LITELLM_CALLBACKS are handed to
the model call. Nothing is imported when neither is set.
"""

from __future__ import annotations

import atexit
from typing import Any

import structlog

from agents import model_call, tracing

log = structlog.get_logger("overseer.telemetry")


def configure_telemetry(settings: Any) -> None:
    """Switch on what the settings ask for; a missing extra is one warning, never a failed start."""
    if settings.callback_names:
        model_call.use_callbacks(settings.callback_names)
    if settings.otel_endpoint and not start_otlp(settings.otel_endpoint, settings.otel_service_name):
        log.warning("telemetry.otel_unavailable", endpoint=settings.otel_endpoint,
                    hint="OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed: pip install 'overseer[otel]'")


def start_otlp(endpoint: str, service_name: str = "overseer") -> bool:
    """Export spans to `endpoint` (OTLP over HTTP, `/v1/traces`), flushed at exit; False without the extra."""
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # a short `overseer run` still sends its spans
    tracing.enable(provider)
    log.info("telemetry.otel_started", endpoint=endpoint, service_name=service_name)
    return True
