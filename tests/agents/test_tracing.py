"""OpenTelemetry GenAI spans per run, step and attempt (when the `otel` extra is installed), and the run's ids
on every model call as litellm metadata, for the callbacks switched on from settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from agents import model_call, tracing
from agents.engine import Engine
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.specs import MODEL, model_spec

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.enable(provider)
    yield exporter
    tracing.disable()


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


async def test_a_run_is_a_span_with_a_span_per_step_and_per_attempt(engine: Engine, fake_model: FakeModel,
                                                                    spans: InMemorySpanExporter) -> None:
    fake_model.script(Reply.status(500), Reply.text("hello", prompt_tokens=12, completion_tokens=3))
    spec = model_spec(fake_model, steps=[{"name": "greet", "model": MODEL, "prompt": "hi"}])
    run_id = await engine.start(spec, {}, started_by="tester")
    assert await engine.advance(run_id) == "succeeded"

    found = by_name(spans)
    [run] = found["invoke_agent test-flow"]
    [step] = found["step greet"]
    failed, ok = sorted(found[f"chat {MODEL}"], key=lambda s: s.attributes["overseer.attempt"])
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent" and run.attributes["overseer.run_id"] == run_id
    assert run.attributes["overseer.run.status"] == "succeeded"
    assert step.parent.span_id == run.context.span_id and step.attributes["gen_ai.request.model"] == MODEL
    assert failed.parent.span_id == ok.parent.span_id == step.context.span_id
    assert ok.attributes["gen_ai.operation.name"] == "chat" and ok.attributes["gen_ai.provider.name"] == "openai"
    assert ok.attributes["gen_ai.system"] == "openai" and ok.attributes["gen_ai.request.model"] == MODEL
    assert (ok.attributes["gen_ai.usage.input_tokens"], ok.attributes["gen_ai.usage.output_tokens"]) == (12, 3)
    assert failed.attributes["error.type"] == "TransientError" and failed.status.status_code.name == "ERROR"
    assert "error.type" not in ok.attributes


async def test_a_failed_tool_step_is_an_error_span(engine: Engine, fake_model: FakeModel, spans: InMemorySpanExporter) -> None:
    spec = model_spec(fake_model, steps=[{"name": "fetch", "tool": "fetch_page", "args": {"url": "http://10.0.0.1/"}}])
    run_id = await engine.start(spec, {}, started_by="tester")
    assert await engine.advance(run_id) == "failed"
    found = by_name(spans)
    [attempt] = found["execute_tool fetch_page"]
    assert attempt.attributes["gen_ai.operation.name"] == "execute_tool" and attempt.attributes["error.type"] == "FetchRefused"
    assert found["step fetch"][0].attributes["error.type"] == "FetchRefused"
    assert found["invoke_agent test-flow"][0].attributes["overseer.run.status"] == "failed"


async def test_without_enable_no_span_is_made(engine: Engine, fake_model: FakeModel) -> None:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fake_model.script(Reply.text("hello"))
    run_id = await engine.start(model_spec(fake_model), {}, started_by="tester")
    assert await engine.advance(run_id) == "succeeded"
    assert exporter.get_finished_spans() == ()


async def test_every_model_call_carries_run_workflow_step_and_attempt_as_metadata(engine: Engine, fake_model: FakeModel) -> None:
    from litellm.integrations.custom_logger import CustomLogger

    seen: list[dict[str, Any]] = []

    class Recorder(CustomLogger):
        async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
            seen.append(dict((kwargs.get("litellm_params") or {}).get("metadata") or {}))

    model_call.use_callbacks([Recorder()])
    try:
        fake_model.script(Reply.text("hello"))
        run_id = await engine.start(model_spec(fake_model), {}, started_by="tester")
        assert await engine.advance(run_id) == "succeeded"
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
    finally:
        model_call.use_callbacks([])
    assert {k: seen[0].get(k) for k in ("run_id", "workflow", "step", "attempt")} == {
        "run_id": run_id, "workflow": "test-flow", "step": "only", "attempt": 1}
    assert "metadata" not in fake_model.requests[0].body  # for the callbacks only, never sent to the provider


async def test_overseer_run_exports_its_spans_over_otlp_when_the_endpoint_is_set(db_url: str) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the otel extra is not installed")
    from tests.cli.test_mock import bare_env
    from tests.fakes.otlp_collector import OtlpCollector
    from tests.helpers.processes import overseer

    with OtlpCollector() as collector:
        env = bare_env(db_url, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_SERVICE_NAME="overseer-test")
        code, out, err = await overseer(env, "run", "ticket-triage", "--mock", "ticket=hi")
        assert code == 0, err
        names = {span.name for _, span in collector.spans}
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    assert {"invoke_agent ticket-triage", "step triage", "step summary", "chat openai/gpt-4o-mini"} <= names
    assert {resource["service.name"] for resource, _ in collector.spans} == {"overseer-test"}
