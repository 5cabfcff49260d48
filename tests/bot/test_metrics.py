"""GET /metrics shows what the database knows after real runs; /healthz names what is down."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bot.settings import load_settings
from bot.slack import blocks as bk
from storage.db import connect
from storage.models import OutboxMessage, utcnow
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.fake_slack import FakeSlack
from tests.helpers.slack_app import BOSS, Bot, StartBot, flow
from tests.helpers.specs import MODEL

ONE_STEP = [{"name": "only", "model": MODEL, "prompt": "Say hi"}]


def fresh() -> Any:
    """Settings whose metrics re-read the database at every scrape."""
    return load_settings(metrics_refresh_seconds=0.0)


async def scrape(bot: Bot, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    response = await bot.http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text) for s in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def run_once(start_bot: StartBot, fake_model: FakeModel) -> tuple[Any, dict[Any, float]]:
    """Start a one-step run through the bot, wait until it is over, and scrape /metrics."""
    bot = await start_bot(flow(fake_model, steps=ONE_STEP), settings=fresh())
    run = await bot.start_run()
    return run, await scrape(bot)


async def test_metrics_count_a_finished_run_its_attempts_tokens_cost_and_durations(start_bot: StartBot, fake_model: FakeModel) -> None:
    run, samples = await run_once(start_bot, fake_model)
    assert run.status == "succeeded"
    assert sample(samples, "overseer_runs", workflow="writer", status="succeeded") == 1
    assert sample(samples, "overseer_attempts_total", status="succeeded", error_type="") == 1
    assert sample(samples, "overseer_tokens_total", model=MODEL, direction="input") == run.tokens_in == 10
    assert sample(samples, "overseer_tokens_total", model=MODEL, direction="output") == run.tokens_out == 5
    assert sample(samples, "overseer_cost_usd_total", model=MODEL) == run.cost_usd
    assert sample(samples, "overseer_step_duration_seconds_count", workflow="writer", step="only") == 1
    assert sample(samples, "overseer_step_duration_seconds_bucket", workflow="writer", step="only", le="+Inf") == 1
    assert sample(samples, "overseer_run_duration_seconds_count", workflow="writer", status="succeeded") == 1
    assert sample(samples, "overseer_run_duration_seconds_sum", workflow="writer", status="succeeded") >= 0
    assert sample(samples, "overseer_outbox_backlog") == 0
    assert sample(samples, "overseer_outbox_oldest_age_seconds") == 0
    assert sample(samples, "overseer_slack_ack_seconds_count") >= 1  # the slash command that started the run


async def test_metrics_count_failed_attempts_by_error_type(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.default = Reply.status(500)
    run, samples = await run_once(start_bot, fake_model)
    assert run.status == "failed"
    assert sample(samples, "overseer_attempts_total", status="failed", error_type="TransientError") == 3
    assert sample(samples, "overseer_runs", workflow="writer", status="failed") == 1
    assert sample(samples, "overseer_run_duration_seconds_count", workflow="writer", status="failed") == 1


async def test_metrics_show_pending_checkpoints_then_the_decision_wait(start_bot: StartBot, fake_model: FakeModel) -> None:
    bot = await start_bot(flow(fake_model), settings=fresh())
    run = await bot.start_run()
    assert sample(await scrape(bot), "overseer_checkpoints_pending", workflow="writer") == 1
    await bot.click(bk.APPROVE, f"{run.id}:draft", user=BOSS)
    await bot.idle()
    samples = await scrape(bot)
    assert ("overseer_checkpoints_pending", (("workflow", "writer"),)) not in samples
    assert sample(samples, "overseer_decision_wait_seconds_count", workflow="writer", action="approve") == 1
    assert sample(samples, "overseer_runs", workflow="writer", status="succeeded") == 1


async def test_metrics_ask_for_the_bearer_token_when_one_is_set(start_bot: StartBot, fake_model: FakeModel) -> None:
    bot = await start_bot(flow(fake_model), settings=load_settings(metrics_token="scrape-token-0123456789"))
    assert (await bot.http.get("/metrics")).status_code == 401
    assert (await bot.http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    samples = await scrape(bot, Authorization="Bearer scrape-token-0123456789")
    assert ("overseer_outbox_backlog", ()) in samples


async def stuck_message(bot: Bot, age_s: float) -> None:
    """An undelivered message held by a peer that never delivers it."""
    now = utcnow()
    async with bot.db.sessions.begin() as session:
        session.add(OutboxMessage(run_id=None, stream="stuck", kind="digest", payload={}, created_at=now - timedelta(seconds=age_s),
                                  claimed_by="dead-peer", claimed_until=now + timedelta(hours=1)))


async def test_healthz_is_503_when_the_outbox_backlog_is_stuck_while_slack_answers(start_bot: StartBot, fake_model: FakeModel) -> None:
    bot = await start_bot(flow(fake_model), settings=load_settings(health_backlog_seconds=300))
    await stuck_message(bot, 340)
    response = await bot.http.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False and body["database"] == "ok" and body["dispatcher"] == "backlog 340 s old"
    assert body["outbox_backlog"] == 1


async def test_healthz_stays_200_when_the_backlog_waits_for_slack_itself(start_bot: StartBot, fake_model: FakeModel, fake_slack: FakeSlack) -> None:
    bot = await start_bot(flow(fake_model), settings=load_settings(health_backlog_seconds=300))
    await stuck_message(bot, 340)
    fake_slack.down()
    try:
        response = await bot.http.get("/healthz")
    finally:
        fake_slack.up()
    assert response.status_code == 200
    assert response.json()["dispatcher"] == "waiting for Slack (backlog 340 s old)"
    assert response.json()["slack"] == "unreachable"


async def test_healthz_says_ok_for_a_young_backlog(start_bot: StartBot, fake_model: FakeModel) -> None:
    bot = await start_bot(flow(fake_model), settings=load_settings(health_backlog_seconds=300))
    await stuck_message(bot, 10)
    body = (await bot.http.get("/healthz")).json()
    assert body == {**body, "ok": True, "status": "ok", "database": "ok", "dispatcher": "ok", "outbox_backlog": 1}


async def test_healthz_is_503_naming_the_socket_mode_connection_when_it_is_down(start_bot: StartBot, fake_model: FakeModel) -> None:
    bot = await start_bot(flow(fake_model))

    async def connected() -> bool:
        return state["connected"]

    state = {"connected": True}
    bot.services.socket_connected = connected
    assert (await bot.http.get("/healthz")).json()["socket"] == "ok"
    state["connected"] = False
    response = await bot.http.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {**response.json(), "ok": False, "socket": "disconnected", "database": "ok"}


async def test_healthz_and_metrics_with_the_database_gone(start_bot: StartBot, fake_model: FakeModel, tmp_path: Path) -> None:
    gone = connect(f"sqlite:///{tmp_path}/no/such/dir/overseer.db")
    bot = await start_bot(flow(fake_model), database=gone)
    response = await bot.http.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {**response.json(), "ok": False, "database": "unavailable", "dispatcher": "unknown (no database)"}
    metrics = await bot.http.get("/metrics")  # still answers: the in-process numbers, and no database ones
    assert metrics.status_code == 200 and "overseer_slack_ack_seconds" in metrics.text and "overseer_runs" not in metrics.text
    await gone.dispose()
