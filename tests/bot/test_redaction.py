"""No secret reaches Slack or a log: a tool or a provider that echoes a credential is reported redacted,
while the database keeps the exact error."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from agents.engine import EngineSettings
from agents.redact import MASK
from agents.spec import WorkflowSpec
from bot import redaction
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import FakeSlack
from tests.helpers.runs import attempts_of
from tests.helpers.slack_app import MODEL, SECRET, TOKEN, StartBot, flow, text_of

GATEWAY = "GATEWAY_CREDENTIAL"  # a name that says nothing: only the spec's api_key_env marks it secret
GATEWAY_KEY = "gw-live-5f3c9a0b7e21d4c8"
LEAKY_TOOL = {"name": "notify", "tool": "tests.helpers.leaky:post_with_bot_token"}
GATEWAY_STEP = {"name": "draft", "model": MODEL, "prompt": "Write about {{ inputs.topic }}", "api_key_env": GATEWAY,
                "retry": {"attempts": 2}}


@pytest.fixture
def engine_settings() -> EngineSettings:
    """The suite's engine settings, with the gateway's key among the secrets steps may name."""
    return EngineSettings(owner="test-owner", lease_seconds=5.0, delay_scale=0.001,
                          secrets={"FAKE_KEY": "sk-fake", GATEWAY: GATEWAY_KEY})


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's environment holds the bot's Slack credentials and the gateway key."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv(GATEWAY, GATEWAY_KEY)


def sent_to_slack(fake: FakeSlack) -> str:
    """Everything the bot sent Slack, but the credentials it authenticates with: call arguments, files, response_url posts."""
    sent = [call.args for call in fake.calls]
    sent += [upload.content.decode("utf-8", "replace") for upload in fake.uploads]
    sent += [post.body for post in fake.responses]
    return json.dumps(sent, ensure_ascii=False)


def started(spec: WorkflowSpec) -> None:
    """What `serve` does once its specs are loaded: redact the environment's secrets and the specs' keys."""
    redaction.install([spec])


async def test_a_tool_error_carrying_the_bot_token_is_reported_redacted(
    start_bot: StartBot, fake_model: FakeModel, secret_env: None, log_stream: io.StringIO
) -> None:
    spec = flow(fake_model, steps=[LEAKY_TOOL])
    started(spec)
    bot = await start_bot(spec)
    run = await bot.start_run()
    assert run.status == "failed"

    report = next(m for m in bot.thread(run) if "failed" in text_of(m))
    assert f"token={MASK}" in text_of(report) and f"signing secret {MASK}" in text_of(report)
    for secret in (TOKEN, SECRET):
        assert secret not in sent_to_slack(bot.fake)
        assert secret not in log_stream.getvalue()
    assert "step.attempt_failed" in log_stream.getvalue()
    [attempt] = await attempts_of(bot, run.id)
    assert f"token={TOKEN} (signing secret {SECRET})" in attempt.error_message  # the record is exact


async def test_a_provider_error_echoing_the_gateway_key_is_reported_redacted(
    start_bot: StartBot, fake_model: FakeModel, secret_env: None, log_stream: io.StringIO
) -> None:
    fake_model.script(Reply.status(500, message=f"upstream refused key {GATEWAY_KEY}"),
                      Reply.status(400, message=f"Invalid API key provided: {GATEWAY_KEY}"))
    spec = flow(fake_model, steps=[GATEWAY_STEP])
    started(spec)
    bot = await start_bot(spec)
    run = await bot.start_run()
    assert run.status == "failed"
    headers = {name.lower(): value for name, value in fake_model.requests[0].headers.items()}
    assert headers["authorization"] == f"Bearer {GATEWAY_KEY}"  # the key was used, as it must be

    report = next(m for m in bot.thread(run) if "failed" in text_of(m))
    assert "Invalid API key provided" in text_of(report) and MASK in text_of(report)
    assert GATEWAY_KEY not in sent_to_slack(bot.fake)
    assert GATEWAY_KEY not in log_stream.getvalue() and "step.attempt_failed" in log_stream.getvalue()
    tried = await attempts_of(bot, run.id)
    assert len(tried) == 2 and all(GATEWAY_KEY in a.error_message for a in tried)  # the record is exact


async def test_a_url_password_in_the_inputs_is_redacted_in_the_parent_message(
    start_bot: StartBot, fake_model: FakeModel, secret_env: None
) -> None:
    fake_model.script(Reply.text("A draft."))
    spec = flow(fake_model)
    started(spec)
    bot = await start_bot(spec)
    run = await bot.start_run("run writer topic=https://bob:hunter2pass@wiki.example.com/page")
    assert run.inputs == {"topic": "https://bob:hunter2pass@wiki.example.com/page"}
    assert "https://bob:***@wiki.example.com/page" in text_of(bot.parent(run))
    assert "hunter2pass" not in sent_to_slack(bot.fake)


async def test_an_ephemeral_answer_is_redacted(start_bot: StartBot, fake_model: FakeModel, secret_env: None) -> None:
    spec = flow(fake_model)
    started(spec)
    bot = await start_bot(spec)
    await bot.command(f"run {SECRET}")
    await bot.idle()
    answers: Any = bot.ephemerals_for("U0ALICE")
    assert answers and all(SECRET not in answer for answer in answers)
    assert SECRET not in sent_to_slack(bot.fake)
