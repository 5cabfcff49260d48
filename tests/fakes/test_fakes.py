"""The fakes behave like the real services, as seen through litellm and slack_sdk."""

from __future__ import annotations

import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import aiohttp
import litellm
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from agents.errors import ContentRefused
from agents.model_call import classify
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.slack_requests import slash_command

litellm.suppress_debug_info = True

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def model(fake_model: FakeModel) -> FakeModel:
    return fake_model


@pytest.fixture
def slack(fake_slack: FakeSlack) -> FakeSlack:
    return fake_slack


async def complete(fake: FakeModel, model: str = "openai/gpt-4o-mini") -> litellm.ModelResponse:
    """One litellm call against the fake with every retry layer turned off."""
    return await litellm.acompletion(
        model=model,
        messages=MESSAGES,
        api_base=fake.api_base,
        api_key="sk-fake",
        num_retries=0,
        max_retries=0,
    )


@pytest.mark.asyncio
async def test_model_scripted_replies_in_order_then_default(model: FakeModel) -> None:
    model.script(Reply.text("first", prompt_tokens=7, completion_tokens=3), Reply.json({"a": 1}))
    model.script_for("other", Reply.text("only for other"))

    first = await complete(model)
    other = await complete(model, "openai/other")
    second = await complete(model)
    default = await complete(model)

    assert first.choices[0].message.content == "first"
    assert first.usage.total_tokens == 10
    assert other.choices[0].message.content == "only for other"
    assert second.choices[0].message.content == '{"a": 1}'
    assert default.choices[0].message.content == "ok"
    assert model.count == 4 and model.count_for("gpt-4o-mini") == 3
    assert model.requests[0].body["messages"] == MESSAGES


@pytest.mark.asyncio
async def test_model_errors_reach_litellm_once(model: FakeModel) -> None:
    model.script(Reply.status(500))
    with pytest.raises(litellm.InternalServerError):
        await complete(model)
    assert model.count == 1

    model.script(Reply.status(429, retry_after=2))
    with pytest.raises(litellm.RateLimitError) as caught:
        await complete(model)
    # litellm keeps the real headers here; caught.value.response is a synthetic one.
    assert caught.value.litellm_response_headers["retry-after"] == "2"

    model.script(Reply.refusal())
    # Some litellm releases raise ContentPolicyViolationError for this, others a plain BadRequestError
    # carrying the provider's code; both are a refusal to Overseer.
    with pytest.raises(litellm.BadRequestError) as refused:
        await complete(model)
    assert isinstance(classify(refused.value), ContentRefused)
    assert model.count == 3


@pytest.mark.asyncio
async def test_slack_posts_and_updates_messages(slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    parent = await client.chat_postMessage(channel="C1", text="parent")
    reply = await client.chat_postMessage(channel="C1", thread_ts=parent["ts"], text="reply")
    await client.chat_update(channel="C1", ts=reply["ts"], text="edited")

    assert float(reply["ts"]) > float(parent["ts"])
    assert [m["text"] for m in slack.posted(channel="C1")] == ["parent", "reply"]
    assert [m["text"] for m in slack.thread("C1", parent["ts"])] == ["edited"]
    assert (await client.auth_test())["user_id"] == "U0BOT"
    # JSON and form bodies both reach the fake as arguments.
    assert slack.calls_to("chat.update")[0].args["text"] == "edited"


@pytest.mark.asyncio
async def test_slack_enforces_block_limits(slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}] * 51

    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel="C1", text="too many", blocks=blocks)

    assert caught.value.response["error"] == "invalid_blocks"
    assert "50" in caught.value.response["response_metadata"]["messages"][0]
    assert slack.posted() == [] and slack.calls[0].answered_ok is False


@pytest.mark.asyncio
async def test_slack_refuses_blocks_over_12000_characters_in_all(slack: FakeSlack) -> None:
    """Each section within its 3,000, five of them too many in all, as Slack answers (bolt-js issues 2509, 2867)."""
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 2500}}
    await client.chat_postMessage(channel="C1", text="fits", blocks=[section] * 4)
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel="C1", text="too long in all", blocks=[section] * 5)
    assert caught.value.response["error"] == "msg_blocks_too_long"
    assert len(slack.posted()) == 1


@pytest.mark.asyncio
async def test_slack_files_upload_v2_end_to_end(slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)

    await client.files_upload_v2(channel="C1", thread_ts="1700000001.000100", content="hello file", filename="x.txt")

    [upload] = slack.uploads
    assert upload.content == b"hello file"
    assert (upload.channel, upload.thread_ts, upload.title) == ("C1", "1700000001.000100", "x.txt")


@pytest.mark.asyncio
async def test_slack_down_then_up_on_same_port(slack: FakeSlack) -> None:
    async with aiohttp.ClientSession() as session:
        # A shared session keeps a pooled keep-alive connection, which down() must cut too;
        # no retry handlers, so the failure is not retried after a back-off.
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url, session=session, retry_handlers=[])
        await client.auth_test()

        slack.down()
        with pytest.raises(aiohttp.ClientConnectionError):
            await client.auth_test()
        with pytest.raises(aiohttp.ClientConnectorError):  # connection refused
            await client.auth_test()
        slack.up()

        assert (await client.auth_test())["ok"] is True
    assert [c.answered_ok for c in slack.calls] == [True, True]


@pytest.mark.asyncio
async def test_slack_injected_failures(slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    slack.rate_limit_next(1, retry_after=3)
    slack.error_next("chat.postMessage", "channel_not_found")

    with pytest.raises(SlackApiError) as limited:
        await client.auth_test()
    with pytest.raises(SlackApiError) as missing:
        await client.chat_postMessage(channel="C1", text="x")
    with pytest.raises(SlackApiError) as unauthed:
        await AsyncWebClient(base_url=slack.api_url).auth_test()

    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "3"
    assert missing.value.response["error"] == "channel_not_found"
    assert unauthed.value.response["error"] == "not_authed"
    assert slack.wait_for(lambda s: len(s.calls) == 3, timeout=1)


def test_signed_slash_command_verifies() -> None:
    body, headers = slash_command("s3cret", text="run digest")
    stale_body, stale_headers = slash_command("s3cret", text="x", timestamp=int(time.time()) - 600)
    verifier = SignatureVerifier("s3cret")

    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert "command=%2Foverseer" in body and "text=run+digest" in body
    assert not verifier.is_valid(
        stale_body, stale_headers["X-Slack-Request-Timestamp"], stale_headers["X-Slack-Signature"]
    )
