"""Settings switch on traces and litellm callbacks; a bad value is one line naming the setting."""

from __future__ import annotations

import pytest

from agents import model_call
from agents.errors import ConfigError
from bot.settings import load_settings
from bot.telemetry import configure_telemetry


def test_litellm_callbacks_are_named_in_one_setting_and_handed_to_every_call() -> None:
    settings = load_settings(OVERSEER_LITELLM_CALLBACKS=" langfuse, langsmith ,")
    assert settings.callback_names == ["langfuse", "langsmith"]
    configure_telemetry(settings)
    try:
        lite = model_call._litellm()
        assert lite.success_callback == ["langfuse", "langsmith"] and lite.failure_callback == ["langfuse", "langsmith"]
    finally:
        model_call.use_callbacks([])
    assert model_call._litellm().success_callback == []


def test_bad_telemetry_settings_are_one_line_each() -> None:
    with pytest.raises(ConfigError, match="^OVERSEER_LITELLM_CALLBACKS: lang fuse: name litellm callbacks"):
        load_settings(OVERSEER_LITELLM_CALLBACKS="lang fuse")
    with pytest.raises(ConfigError, match="^OTEL_EXPORTER_OTLP_ENDPOINT: must be an http"):
        load_settings(OTEL_EXPORTER_OTLP_ENDPOINT="localhost:4318")
    assert load_settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://localhost:4318/").otel_endpoint == "http://localhost:4318"
