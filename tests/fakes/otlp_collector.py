"""A fake OpenTelemetry collector: accepts OTLP/HTTP trace exports on POST /v1/traces and keeps their spans."""

from __future__ import annotations

import threading
from typing import Any

from tests.fakes.fake_model import LoopbackServer, QuietHandler


class _CollectorHandler(QuietHandler):
    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        body = self.read_body()
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        owner: OtlpCollector = self.owner
        with owner.lock:
            owner.paths.append(self.path)
            for resource in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    owner.spans.extend((attributes, span) for span in scope.spans)
        self.reply(200, b"", "application/x-protobuf")


class OtlpCollector(LoopbackServer):
    """The spans exported to it, each with its resource's attributes (service.name, ...)."""

    handler_class = _CollectorHandler

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.paths: list[str] = []
        self.spans: list[tuple[dict[str, str], Any]] = []

    @property
    def endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT is set to."""
        return f"http://127.0.0.1:{self.port}"
