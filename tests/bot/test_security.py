"""Only Slack's signed requests change anything, each once, and model output can never ping or fake a link."""

from __future__ import annotations

import asyncio
import time

import pytest

from agents import outbox
from agents.errors import ConfigError
from bot.server import build_services
from bot.settings import load_settings
from bot.slack import blocks as bk
from bot.slack.endpoint import MAX_BODY, SeenSignatures
from storage.db import Database
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.slack_requests import block_action, sign, slash_command
from tests.helpers.slack_app import BOSS, CHANNEL, SECRET, TOKEN, Bot, StartBot, flow, text_of


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: slash_command("not-the-secret", text="run writer"), id="forged"),
        pytest.param(lambda: (slash_command(SECRET, text="run writer")[0], {"Content-Type": "application/x-www-form-urlencoded"}), id="unsigned"),
        pytest.param(lambda: slash_command(SECRET, text="run writer", timestamp=int(time.time()) - 6 * 60), id="stale"),
        pytest.param(lambda: (slash_command(SECRET, text="run writer")[0] + "&text=run+evil",
                              slash_command(SECRET, text="run writer")[1]), id="tampered"),
    ],
)
async def test_a_forged_unsigned_stale_or_tampered_request_gets_401_and_changes_nothing(
    start_bot: StartBot, fake_model: FakeModel, forge
) -> None:
    bot = await start_bot(flow(fake_model))
    body, headers = forge()
    response = await bot.post(body, headers)
    assert response.status_code == 401
    await bot.idle()
    assert await bot.outbox() == []
    assert bot.fake.ephemerals == [] and bot.fake.views == []
    assert fake_model.count == 0


async def test_a_forged_click_cannot_approve(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.script(Reply.text("draft"))
    bot = await start_bot(flow(fake_model))
    run = await bot.start_run()
    response = await bot.post(*block_action("guessed-secret", action_id=bk.APPROVE, value=f"{run.id}:draft", user_id=BOSS))
    assert response.status_code == 401
    await bot.idle()
    assert (await bot.run(run.id)).status == "awaiting_approval"


async def test_model_output_with_mentions_and_fake_links_is_posted_harmless(start_bot: StartBot, fake_model: FakeModel) -> None:
    evil = "Hey <!channel> and <!here>, ask <@U123> or <!subteam^S999>; log in at <https://evil.test|your bank> & relax"
    fake_model.script(Reply.text(evil))
    bot = await start_bot(flow(fake_model))
    run = await bot.start_run("run writer topic=<!everyone>")
    everything = "".join(text_of(m) for m in bot.fake.posted()) + "".join(
        str(c.args) for c in bot.fake.calls_to("chat.update")
    )
    for bad in ("<!channel>", "<!here>", "<@U123>", "<!subteam^S999>", "<https://evil.test", "<!everyone>"):
        assert bad not in everything
    [checkpoint] = bot.thread(run)
    assert "&lt;!channel&gt;" in text_of(checkpoint) and "&lt;@U123&gt;" in text_of(checkpoint) and "&amp; relax" in text_of(checkpoint)
    assert all("link_names" not in c.args and "parse" not in c.args for c in bot.fake.calls_to("chat.postMessage"))
    assert f"<@{BOSS}>" in text_of(checkpoint)  # deliberate mentions still work


async def test_a_long_output_is_cut_with_a_note_and_uploaded_in_the_thread(start_bot: StartBot, fake_model: FakeModel) -> None:
    long_output = "".join(f"line {i}: the owl & the pussycat\n" for i in range(400))  # ~12,000 characters
    fake_model.script(Reply.text(long_output))
    bot = await start_bot(flow(fake_model))
    run = await bot.start_run()
    [checkpoint] = bot.thread(run)
    assert bk.CONTINUED in text_of(checkpoint)
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in checkpoint["blocks"])
    [upload] = bot.fake.uploads
    assert upload.content.decode() == long_output.strip()
    assert (upload.channel, upload.thread_ts) == (CHANNEL, run.message_ts)

    view = await bot.open_modal(bk.EDIT, f"{run.id}:draft")
    assert "only the first 3000 fit here" in str(view["blocks"])
    assert len(view["blocks"][-1]["element"]["initial_value"]) == 3000


def test_block_builders_respect_slacks_limits_by_construction() -> None:
    from tests.fakes.fake_slack import blocks_problems, view_problems

    huge = "<@U1> & " * 5000
    text, blocks, was_cut = bk.checkpoint_message("r" * 12, "s" * 200, huge, ["U0BOSS"])
    assert was_cut and blocks_problems(blocks, 50) == []
    report = outbox.StepFailed.from_payload({
        "step": "s", "step_kind": "model", "error_type": "TransientError", "retried": True, "error": huge,
        "input": {"prompt": huge}, "last_raw_output": huge,
        "attempts": [{"number": i, "model": None, "at": "2026-01-01T00:00:00+00:00", "error": huge, "backoff_s": 1.0}
                     for i in range(200)],
    })
    _, blocks, cut = bk.failure_report("run", report, ["U0A", "S0B"])
    assert blocks_problems(blocks, 50) == [] and cut == {"input": True, "raw": True}
    assert "<@U1>" not in str(blocks)

    class Step:
        def __init__(self, i: int) -> None:
            self.step, self.status, self.attempts, self.started_at, self.finished_at, self.cost_usd = f"step{i}" * 20, "succeeded", 1, None, None, 0.0

    class Run:
        id, workflow, status, started_by, trigger, cost_usd, started_at, finished_at = "r1", "w" * 300, "running", "U0A", "slack", 0.1, None, None
        inputs, spec, error = {"topic": huge}, {"approvers": ["U0B"]}, None

    _, blocks = bk.parent_message(Run(), [Step(i) for i in range(300)], {})
    assert blocks_problems(blocks, 50) == []
    assert view_problems(bk.edit_modal("r", "s", huge, "C1", "text")) == []
    assert view_problems(bk.retry_modal("r", "s", "model", {"prompt": huge, "system": huge}, "C1")) == []
    assert bk.cut_escaped(bk.escape_mrkdwn("a" * 9 + "&"), 12) in ("aaaaaaaaa…", "aaaaaaaaa&amp;")


def test_the_longest_names_allowed_fit_every_id_slack_carries() -> None:
    from agents.loading import parse_spec
    from tests.fakes.fake_slack import blocks_problems, view_problems

    spec = parse_spec({"name": "w" * 64, "approvers": ["U0BOSS"], "inputs": {"i" * 64: {"type": "string", "required": True}},
                       "steps": [{"name": "s" * 64, "model": "m", "prompt": "p", "checkpoint": True}]}, "flow.yaml")
    run_id = "r" * 12
    _, blocks, _ = bk.checkpoint_message(run_id, "s" * 64, "out", ["U0BOSS"])
    assert blocks_problems(blocks, 50) == []
    assert view_problems(bk.run_modal(spec, {}, "C0123456789")) == []
    assert view_problems(bk.retry_modal(run_id, "s" * 64, "model", {"prompt": "p"}, "C0123456789")) == []


# --- the doors: Socket Mode, body size, malformed and replayed requests ----------------------------


async def test_in_socket_mode_no_slack_route_is_served_over_http(start_bot: StartBot, fake_model: FakeModel) -> None:
    """Socket Mode once kept POST /slack/events open, verified with a secret written in the source."""
    bot = await start_bot(flow(fake_model), socket_mode=True)
    for secret in (SECRET, "socket-mode"):
        response = await bot.post(*slash_command(secret, text="run writer"))
        assert response.status_code == 404
    assert (await bot.http.get("/healthz")).status_code == 200
    await bot.idle()
    assert await bot.outbox() == [] and bot.fake.ephemerals == [] and fake_model.count == 0


@pytest.mark.parametrize("secret", [None, "", "   "])
async def test_http_mode_refuses_to_start_without_a_signing_secret(db: Database, fake_slack: FakeSlack, secret: str | None) -> None:
    """An empty secret would make every forged request "verified": no HTTP app is built without one."""
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
        build_services(db=db, specs={}, bot_token=TOKEN, signing_secret=secret, slack_api_url=fake_slack.api_url)
    settings = load_settings(slack_bot_token=TOKEN, slack_signing_secret=secret)
    with pytest.raises(ConfigError) as info:
        settings.require_slack()
    assert "SLACK_SIGNING_SECRET is not set" in str(info.value) and "\n" not in str(info.value)


async def _raw(bot: Bot, head: str, *parts: bytes) -> str:
    """Send a request byte by byte as given (no client fixing it up); the status line of the answer."""
    port = bot.server.servers[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode())
        for part in parts:
            writer.write(part)
        return (await asyncio.wait_for(reader.readline(), 10)).decode()
    finally:
        writer.close()


async def test_a_body_over_the_cap_is_refused_before_it_is_read(start_bot: StartBot, fake_model: FakeModel) -> None:
    """A 150 MB body said to come is refused after its first kilobyte; a chunked one once past 1 MB."""
    bot = await start_bot(flow(fake_model))
    head = "POST /slack/events HTTP/1.1\nHost: overseer\nContent-Type: application/x-www-form-urlencoded\n"
    status = await _raw(bot, head + "Content-Length: 150000000\n\n", b"text=" + b"a" * 1000)
    assert status.startswith("HTTP/1.1 413")
    chunk = b"a" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (MAX_BODY // len(chunk) + 2)  # never finished
    status = await _raw(bot, head + "Transfer-Encoding: chunked\n\n", *chunks)
    assert status.startswith("HTTP/1.1 413")
    await bot.idle()
    assert await bot.outbox() == [] and bot.fake.ephemerals == []
    # Under the cap the request is Slack's to make; that much command text is still refused, unread.
    body, headers = slash_command(SECRET, text="run writer topic=" + "a" * (MAX_BODY // 2), response_url=bot.fake.response_url("big"))
    assert (await bot.post(body, headers)).status_code == 200
    await bot.idle()
    [answer] = [e["text"] for e in bot.fake.ephemerals]
    assert "500,017 characters long; at most 12,000 are read" in answer
    assert await bot.outbox() == []


@pytest.mark.parametrize("timestamp", ["soon", "", "1e9", "-5", "٣٤".encode(), "9" * 5000])
async def test_a_malformed_timestamp_gets_401_not_a_traceback(start_bot: StartBot, fake_model: FakeModel, timestamp: str | bytes) -> None:
    bot = await start_bot(flow(fake_model))
    body, headers = slash_command(SECRET, text="run writer")
    response = await bot.post(body, {**headers, "X-Slack-Request-Timestamp": timestamp})
    assert response.status_code == 401 and response.json() == {"error": "invalid request"}
    await bot.idle()
    assert await bot.outbox() == [] and fake_model.count == 0


async def test_a_body_that_is_not_utf8_gets_401_not_a_traceback(start_bot: StartBot, fake_model: FakeModel) -> None:
    bot = await start_bot(flow(fake_model))
    headers = sign(SECRET, "text=run+writer")
    response = await bot.http.post("/slack/events", content=b"text=run+writer\xff\xfe", headers=headers)
    assert response.status_code == 401 and response.json() == {"error": "invalid request"}


async def test_a_signed_request_replayed_within_the_window_does_not_start_a_second_run(
    start_bot: StartBot, fake_model: FakeModel
) -> None:
    fake_model.default = Reply.text("draft")
    bot = await start_bot(flow(fake_model))
    body, headers = slash_command(SECRET, text="run writer", response_url=bot.fake.response_url("once"))
    assert (await bot.post(body, headers)).status_code == 200
    replays = await asyncio.gather(*(bot.post(body, headers) for _ in range(5)))
    assert {r.status_code for r in replays} == {401}
    await bot.idle()
    await bot.only_run()  # one run, not six
    response = await bot.post(*slash_command(SECRET, text="run writer", response_url=bot.fake.response_url("again")))
    assert response.status_code == 200  # a new request from Slack is still welcome


def test_signatures_are_remembered_within_the_window_only_and_in_bounded_memory() -> None:
    now = [1_000_000.0]
    seen = SeenSignatures(capacity=100, clock=lambda: now[0])
    assert seen.first_sighting("v0=a", 1_000_000) and not seen.first_sighting("v0=a", 1_000_000)
    now[0] += 301  # the timestamp left the window: Bolt refuses the request as stale from now on
    assert seen.first_sighting("v0=b", int(now[0])) and len(seen) == 1
    for i in range(1000):
        seen.first_sighting(f"v0={i}", int(now[0]))
    assert len(seen) <= 100
