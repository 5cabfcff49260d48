"""`overseer serve --mock`: Slack is real, the models are not; the run's parent message says so."""

from __future__ import annotations

import dataclasses

import pytest

from agents.engine import EngineSettings
from tests.fakes.fake_model import FakeModel
from tests.helpers.slack_app import StartBot, flow, text_of

ONE_STEP = [{"name": "summary", "model": "openai/gpt-4o-mini", "prompt": "Summarise {{ inputs.topic }}",
             "example": "Owls hunt at night."}]


@pytest.fixture
def engine_settings(engine_settings: EngineSettings) -> EngineSettings:
    """The bot's engine as `serve --mock` builds it."""
    return dataclasses.replace(engine_settings, mock=True)


async def test_a_mocked_run_from_slack_calls_no_model_and_its_parent_message_carries_a_mock_badge(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    bot = await start_bot(flow(fake_model, steps=ONE_STEP))
    run = await bot.start_run()
    assert run.status == "succeeded" and run.mocked is True and run.cost_usd == 0
    assert fake_model.requests == []
    parent = text_of(bot.parent(run))
    assert "`mock`" in parent and "no model called" in parent and "· mock" in parent
