"""Logs are JSON events with the run's context on every line, and secrets never reach them."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from agents.engine import Engine
from bot.redaction import redact
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.specs import model_spec


async def test_every_line_inside_a_run_carries_run_workflow_step_and_attempt(
    engine: Engine, fake_model: FakeModel, log_stream: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_model.script(Reply.status(500), Reply.text("fine"))
    run_id = await engine.start(model_spec(fake_model), {}, started_by="t")
    assert await engine.advance(run_id) == "succeeded"
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    inside = [line for line in lines if line["event"] != "run.queued"]
    assert {"step.started", "step.attempt_failed", "step.retry_scheduled", "step.succeeded", "run.finished"} <= {l["event"] for l in inside}
    for line in inside:
        assert line["run_id"] == run_id and line["workflow"] == "test-flow"
        assert "step" in line and "attempt" in line
    failed = next(line for line in inside if line["event"] == "step.attempt_failed")
    assert failed["step"] == "only" and failed["attempt"] == 1
    assert "LiteLLM" not in capsys.readouterr().out  # litellm's own chatter stays off stdout


def test_secrets_are_redacted_before_anything_is_written(log_stream: io.StringIO) -> None:
    structlog.get_logger().info(
        "x", token="xoxb-1-2-abc", headers={"Authorization": "Bearer sk-live-123456"}, note="app xapp-1-A-2 key sk-proj-abcdef12"
    )
    line = log_stream.getvalue()
    for secret in ("xoxb-1-2-abc", "sk-live-123456", "xapp-1-A-2", "sk-proj-abcdef12"):
        assert secret not in line
    assert redact("Bearer abc.def") == "Bearer [REDACTED]"
