"""Ack latency of signed slash commands with runs in flight, against a bare Bolt app in the same server.

    python bench/slack_ack.py [--waves 20] [--concurrency 50] [--in-flight 100] [--no-freeze]

One uvicorn server in this process serves the real app (POST /slack/events) and a bare Bolt AsyncApp
whose only listener acks (POST /bare/events). Meanwhile ~100 three-step runs are kept in flight against a
fake model that answers in `--model-seconds` (2 s) (the runner's slot limit is raised to let them all run). Each wave sends
`--concurrency` signed slash commands at once to one of the two apps, alternating, so both see the same
load; half of the real app's are `/overseer run` (acked once the run is committed), half `/overseer
status`. The time is from sending a request to its HTTP response. `--no-freeze` undoes the collector
tuning of warm-up (gc.freeze and thresholds) to measure what it buys.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler  # noqa: E402
from slack_bolt.async_app import AsyncApp  # noqa: E402
from starlette.routing import Route  # noqa: E402

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


def bare_app(api_url: str) -> AsyncApp:
    """A Bolt app that only acks /overseer, as a Bolt starter would."""
    from slack_sdk.web.async_client import AsyncWebClient

    app = AsyncApp(client=AsyncWebClient(token="xoxb-bench", base_url=api_url), signing_secret=SECRET,
                   process_before_response=False)

    @app.command("/overseer")
    async def ack_only(ack):  # type: ignore[no-untyped-def]
        await ack()

    return app


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def keep_in_flight(services, spec, target: int, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    """Start runs whenever fewer than `target` are being driven."""
    while not stop.is_set():
        missing = target - len(services.runner.active)
        for _ in range(max(missing, 0)):
            await services.engine.start(spec, {}, started_by="bench", trigger="cli")
        if missing > 0:
            services.runner.kick()
        await asyncio.sleep(0.2)


async def main(args: argparse.Namespace) -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack, FakeModel() as model:
        model.default = Reply.slow(args.model_seconds, Reply.text("ok"))
        db = connect(args.url or f"sqlite:///{tmp}/bench.db")
        await upgrade(db)
        step = {"model": "openai/gpt-4o-mini", "prompt": "hi", "api_base": model.api_base, "api_key_env": "K"}
        spec = parse_spec({"name": "bench", "channel": "C0BENCH", "steps": [
            {"name": n, **step} for n in ("one", "two", "three")]}, "bench.yaml")
        services = build_services(
            db=db, specs={"bench": spec}, bot_token="xoxb-bench", signing_secret=SECRET, slack_api_url=slack.api_url,
            engine_settings=EngineSettings(secrets={"K": "sk-fake"}, delay_scale=0.001),
            dispatcher_settings=DispatcherSettings(poll_seconds=0.2), runner_poll_seconds=0.2, tasks=[],
        )
        # The runner's slot limit (8 unless configured) would queue most of the runs: lift it.
        services.runner.slots.size = max(services.runner.slots.size, 2 * args.in_flight)
        await services.warm_up()  # as serve() does
        if args.no_freeze:
            gc.unfreeze()
            gc.set_threshold(700, 10, 10)
        asgi = create_asgi_app(services)
        asgi.router.routes.append(Route("/bare/events", AsyncSlackRequestHandler(bare_app(slack.api_url)).handle,
                                        methods=["POST"]))
        server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=0, log_level="error", lifespan="on",
                                               access_log=False))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        stop = asyncio.Event()
        loader = asyncio.create_task(keep_in_flight(services, spec, args.in_flight, stop))
        times: dict[str, list[float]] = {"overseer": [], "bare": [], "  run": [], "  status": []}
        in_flight: list[int] = []
        limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as http:
            for path in ("/slack/events", "/bare/events"):  # warm-up
                await http.post(path, content=(r := slash_command(SECRET, text="help"))[0], headers=r[1])
            while len(services.runner.active) < args.in_flight:
                await asyncio.sleep(0.1)
            seq = 0

            async def one(path: str, text: str) -> float:
                nonlocal seq
                seq += 1
                body, headers = slash_command(SECRET, text=text, response_url=slack.response_url(f"bench-{seq}"))
                start = time.perf_counter()
                response = await http.post(path, content=body, headers=headers)
                elapsed = time.perf_counter() - start
                assert response.status_code == 200, response.text
                return elapsed

            for wave in range(2 * args.waves):
                bare = wave % 2 == 1
                in_flight.append(len(services.runner.active))
                texts = ["help"] * args.concurrency if bare else [
                    "run bench" if i % 2 else "status" for i in range(args.concurrency)]
                path = "/bare/events" if bare else "/slack/events"
                got = await asyncio.gather(*(one(path, t) for t in texts))
                times["bare" if bare else "overseer"].extend(got)
                if not bare:
                    for t, took in zip(texts, got):
                        times["  " + t.split()[0]].append(took)
                await asyncio.sleep(0.1)
        stop.set()
        await loader
        await services.context.settle()
        server.should_exit = True
        await task
        await db.dispose()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"ack latency, {args.waves} waves of {args.concurrency} concurrent signed slash commands per app, "
          f"runs in flight {min(in_flight)}-{max(in_flight)} (gc freeze {'off' if args.no_freeze else 'on'}; "
          f"load average {load})")
    for name, values in times.items():
        if not values:
            continue
        print(f"  {name:9} p50 {statistics.median(values) * 1000:7.1f} ms   p99 {pct(values, 0.99) * 1000:7.1f} ms"
              f"   max {max(values) * 1000:7.1f} ms   ({len(values)} requests)")
    ratio = pct(times["overseer"], 0.99) / pct(times["bare"], 0.99)
    print(f"  p99 overseer / bare: {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waves", type=int, default=20, help="waves per app")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--model-seconds", type=float, default=2.0)
    parser.add_argument("--no-freeze", action="store_true")
    asyncio.run(main(parser.parse_args()))
