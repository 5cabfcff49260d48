"""Ack latency of signed slash commands against the in-process app (fake Slack, SQLite). Prints figures.

    /tmp/venv/bin/python bench/slack_ack.py [REQUESTS]

Each request is a real signed HTTP POST to /slack/events; the time is from sending it to the ack's HTTP
response. Half are `/overseer status` (a DB read after the ack), half `/overseer run` (acked once its run
is committed, then driven against a fake model while later requests arrive).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from agents.engine import EngineSettings  # noqa: E402
from agents.loading import parse_spec  # noqa: E402
from bot.server import build_services, create_asgi_app  # noqa: E402
from bot.slack.dispatcher import DispatcherSettings  # noqa: E402
from storage.db import connect  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from tests.fakes.fake_model import FakeModel, Reply  # noqa: E402
from tests.fakes.fake_slack import FakeSlack  # noqa: E402
from tests.fakes.slack_requests import slash_command  # noqa: E402

SECRET = "bench-signing-secret"


async def main(count: int) -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack, FakeModel() as model:
        model.default = Reply.slow(0.05, Reply.text("ok"))
        db = connect(f"sqlite:///{tmp}/bench.db")
        await upgrade(db)
        spec = parse_spec({"name": "bench", "channel": "C0BENCH", "steps": [
            {"name": "only", "model": "openai/gpt-4o-mini", "prompt": "hi", "api_base": model.api_base, "api_key_env": "K"}]},
            "bench.yaml")
        services = build_services(
            db=db, specs={"bench": spec}, bot_token="xoxb-bench", signing_secret=SECRET, slack_api_url=slack.api_url,
            engine_settings=EngineSettings(secrets={"K": "sk-fake"}, delay_scale=0.001),
            dispatcher_settings=DispatcherSettings(poll_seconds=0.2), runner_poll_seconds=0.2, tasks=[],
        )
        await services.warm_up()  # as serve() does
        server = uvicorn.Server(uvicorn.Config(create_asgi_app(services), host="127.0.0.1", port=0, log_level="error",
                                               lifespan="on", access_log=False))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await http.post("/slack/events", content=(r := slash_command(SECRET, text="help"))[0], headers=r[1])  # warm-up
            times: list[float] = []
            for i in range(count):
                # A response_url of its own, as Slack gives every command: identical requests are replays.
                body, headers = slash_command(SECRET, text="run bench" if i % 2 else "status", response_url=slack.response_url(f"bench-{i}"))
                start = time.perf_counter()
                response = await http.post("/slack/events", content=body, headers=headers)
                times.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
        await services.context.settle()
        server.should_exit = True
        await task
        await db.dispose()
    times.sort()
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    print(f"ack latency over {count} signed slash commands (fake Slack, SQLite, runs in flight):")
    print(f"  median {statistics.median(times) * 1000:.1f} ms   p95 {p95 * 1000:.1f} ms   max {times[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
