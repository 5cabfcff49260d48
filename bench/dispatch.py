"""The outbox backlog with runs in flight: serve's Runner and Dispatcher against a fake Slack.

    python bench/dispatch.py [--in-flight 100] [--seconds 30] [--channels 100] [--url ...]

Keeps `--in-flight` three-step runs going (fake model answering in 1 s) for `--seconds`, spread over
`--channels` Slack channels, with the dispatcher delivering as in `overseer serve` (posts paced per
channel: a burst of 3, then one a second). Samples the age of the oldest undelivered message (what
/metrics exports as overseer_outbox_oldest_age_seconds) twice a second, and prints its median and
maximum, the messages delivered per second, the time to drain once the load stops, and the fastest
posting seen in any one channel.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from agents.engine import EngineSettings  # noqa: E402
from bench.throughput import KEY, three_steps  # noqa: E402
from bot.logs import configure_logging  # noqa: E402
from bot.server import build_services  # noqa: E402
from bot.slack.dispatcher import DispatcherSettings  # noqa: E402
from storage import metrics_queries  # noqa: E402
from storage.db import connect  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import OutboxMessage, utcnow  # noqa: E402
from tests.fakes.fake_model import FakeModel, Reply  # noqa: E402
from tests.fakes.fake_slack import FakeSlack  # noqa: E402


async def keep_in_flight(services, spec, target: int, channels: int, stop: asyncio.Event) -> int:  # type: ignore[no-untyped-def]
    started = 0
    while not stop.is_set():
        for _ in range(max(target - len(services.runner.active), 0)):
            await services.engine.start(spec, {}, started_by="bench", channel=f"C{started % channels:04d}")
            started += 1
        services.runner.kick()
        await asyncio.sleep(0.2)
    return started


async def backlog_age(db) -> float:  # type: ignore[no-untyped-def]
    async with db.sessions() as session:
        return (await metrics_queries.snapshot(session=session, now=utcnow())).outbox_oldest_s


def fastest_channel(slack: FakeSlack, window: float = 10.0) -> float:
    """The most posts any one channel got in any `window` seconds, per second."""
    per_channel: dict[str, list[float]] = defaultdict(list)
    for call in slack.calls_to("chat.postMessage"):
        per_channel[str(call.args.get("channel"))].append(call.at)
    best = 0
    for times in per_channel.values():
        times.sort()
        j = 0
        for i, t in enumerate(times):
            while times[j] < t - window:
                j += 1
            best = max(best, i - j + 1)
    return best / window


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    configure_logging(fmt="json", level="info", stream=open(os.devnull, "w"))  # noqa: SIM115
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = connect(url)
    await upgrade(db)
    with FakeModel() as model, FakeSlack() as slack:
        model.default = Reply.slow(1.0, Reply.text("ok"))
        spec = three_steps(model.api_base)
        services = build_services(
            db=db, specs={spec.name: spec}, bot_token="xoxb-bench", signing_secret="bench-secret", slack_api_url=slack.api_url,
            engine_settings=EngineSettings(owner="bench", secrets={KEY: "sk-bench"}),
            dispatcher_settings=DispatcherSettings(poll_seconds=1.0), runner_poll_seconds=1.0, tasks=[],
        )
        services.runner.slots.size = max(services.runner.slots.size, 2 * args.in_flight)  # 8 unless configured
        await services.warm_up()
        await services.start()
        stop = asyncio.Event()
        loader = asyncio.create_task(keep_in_flight(services, spec, args.in_flight, args.channels, stop))
        ages: list[float] = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            await asyncio.sleep(0.5)
            ages.append(await backlog_age(db))
        stop.set()
        started = await loader
        loaded = time.perf_counter() - t0
        async with db.sessions() as session:
            delivered = await session.scalar(select(func.count()).where(OutboxMessage.delivered_at.is_not(None)))
        await services.runner.wait_idle(timeout=120)
        t1 = time.perf_counter()
        while await backlog_age(db) > 0 and time.perf_counter() - t1 < 300:
            await asyncio.sleep(0.2)
        drained = time.perf_counter() - t1
        await services.stop()
    await db.dispose()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"outbox backlog with {args.in_flight} three-step runs in flight (1 s model) for {loaded:.0f} s over "
          f"{args.channels} channels, {url.split(':', 1)[0]} (load average {load}):")
    print(f"  {started:,} runs started; {delivered:,} messages delivered during the load ({delivered / loaded:.1f}/s)")
    print(f"  oldest undelivered message: median {statistics.median(ages):.1f} s, max {max(ages):.1f} s "
          f"(sampled every 0.5 s); drained {drained:.1f} s after the last run finished")
    print(f"  fastest posting in one channel: {fastest_channel(slack):.2f} posts/s over 10 s")


if __name__ == "__main__":
    asyncio.run(main())
