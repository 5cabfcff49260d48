"""Throughput: many concurrent three-step runs through serve's Runner, against bare litellm calls.

    python bench/throughput.py [--runs 200 1000] [--model-seconds 1.0] [--url postgresql://...]

For each N in --runs: N runs of a three-step workflow are queued, then one Runner (as `overseer serve`
builds it, with its slot limit raised to N) drives them all against a fake OpenAI server that answers
every call in --model-seconds; the wall time is from the runner's first tick to the last run finished.
In the same process, N concurrent tasks each make the same three `litellm.acompletion` calls to the
same server: the floor (litellm's own CPU cost included). Prints both, their ratio, and the runs that
did not succeed or are still unfinished (lost or stuck; must be 0).

Before that, peak RSS (resource.getrusage) of the process once serve's pieces are built and warmed up
(idle), and after 1,000 runs were driven to a checkpoint that now waits (pending).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text  # noqa: E402

from agents.engine import Engine, EngineSettings  # noqa: E402
from agents.loading import parse_spec  # noqa: E402
from agents.model_call import _litellm  # noqa: E402
from agents.runner import Runner  # noqa: E402
from bot.logs import configure_logging  # noqa: E402
from bot.server import build_services  # noqa: E402
from storage.db import connect  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Run  # noqa: E402
from tests.fakes import fake_model  # noqa: E402
from tests.fakes.fake_model import FakeModel, Reply  # noqa: E402
from tests.fakes.fake_slack import FakeSlack  # noqa: E402

KEY = "BENCH_KEY"


def three_steps(api_base: str, *, checkpoint: bool = False):  # type: ignore[no-untyped-def]
    step = {"model": "openai/gpt-4o-mini", "api_base": api_base, "api_key_env": KEY}
    steps = [
        {"name": "one", "prompt": "Write about {{ inputs.topic }}", **step},
        {"name": "two", "prompt": "Shorten: {{ steps.one.output }}", **step},
        {"name": "three", "prompt": "Title for: {{ steps.two.output }}", **step},
    ]
    if checkpoint:
        steps = [{**steps[0], "checkpoint": True}]
    return parse_spec({"name": "bench-checkpoint" if checkpoint else "bench", "approvers": ["U0ALICE"],
                       "inputs": {"topic": {"default": "tea"}}, "steps": steps}, "bench.yaml")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bare(api_base: str, n: int) -> float:
    """N concurrent tasks of three sequential litellm calls; the wall time."""
    lite = _litellm()

    async def one() -> None:
        for prompt in ("Write about tea", "Shorten: ok", "Title for: ok"):
            await lite.acompletion(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": prompt}], api_base=api_base,
                api_key="sk-bench", num_retries=0, max_retries=0, timeout=600,
            )

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - started


async def through_runner(engine: Engine, spec, n: int) -> tuple[float, float, dict[str, int]]:  # type: ignore[no-untyped-def]
    """Queue N runs, drive them with one Runner; (seconds to queue, seconds to drive, runs by status)."""
    t0 = time.perf_counter()
    ids = [await engine.start(spec, {}, started_by="bench") for _ in range(n)]
    queued = time.perf_counter() - t0
    runner = Runner(engine, concurrency=n, poll_seconds=0.5)
    t1 = time.perf_counter()
    try:
        await runner.wait_idle(timeout=max(120.0, 2.0 * n))
    except TimeoutError:
        print(f"  (the runner was not idle after {max(120.0, 2.0 * n):.0f} s)")
    driven = time.perf_counter() - t1
    await runner.stop(2.0)
    async with engine.db.sessions() as session:
        rows = await session.execute(select(Run.status, func.count()).where(Run.id.in_(ids)).group_by(Run.status))
        statuses = {s: int(c) for s, c in rows.all()}
    return queued, driven, statuses


async def rss(db, api_base: str, slack: FakeSlack, pending: int) -> None:  # type: ignore[no-untyped-def]
    spec = three_steps(api_base, checkpoint=True)
    services = build_services(db=db, specs={spec.name: spec}, bot_token="xoxb-bench", signing_secret="bench-secret",
                              slack_api_url=slack.api_url, engine_settings=EngineSettings(owner="bench", secrets={KEY: "sk"}),
                              tasks=[])
    await services.warm_up()
    idle = peak_rss_mb()
    _, driven, statuses = await through_runner(services.engine, spec, pending)
    print(f"peak RSS: idle (serve's pieces built, warmed up) {idle:.0f} MB; after driving {pending:,} runs to a "
          f"checkpoint ({statuses.get('awaiting_approval', 0):,} now pending, {driven:.1f} s) {peak_rss_mb():.0f} MB")
    async with db.engine.begin() as conn:  # out of the way of the throughput runs
        await conn.execute(text("DELETE FROM outbox"))
        await conn.execute(text("DELETE FROM runs"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--model-seconds", type=float, default=1.0)
    parser.add_argument("--pending", type=int, default=1000, help="checkpoints pending for the RSS figure (0: skip)")
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    configure_logging(fmt="json", level="info", stream=open(os.devnull, "w"))  # noqa: SIM115 - logging is part of the cost
    fake_model._Server.request_queue_size = 4096  # a thousand connections at once: no SYN dropped by a short backlog
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = connect(url)
    await upgrade(db)
    backend = url.split(":", 1)[0]
    with FakeModel() as model, FakeSlack() as slack:
        model.default = Reply.slow(args.model_seconds, Reply.text("ok"))
        if args.pending:
            await rss(db, model.api_base, slack, args.pending)
        engine = Engine(db, settings=EngineSettings(owner="bench", secrets={KEY: "sk-bench"}))
        spec = three_steps(model.api_base)
        await bare(model.api_base, 10)  # warm the client pool
        for n in args.runs:
            floor = await bare(model.api_base, n)
            queued, driven, statuses = await through_runner(engine, spec, n)
            bad = n - statuses.get("succeeded", 0)
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"{n:,} concurrent three-step runs, {args.model_seconds:g} s model, {backend} (load average {load}):")
            print(f"  bare litellm: {floor:6.2f} s   runner: {driven:6.2f} s   ratio {driven / floor:.2f}x (target <= 1.3x)"
                  f"   (queueing the runs took {queued:.2f} s more)")
            print(f"  runs not succeeded (lost or stuck): {bad}" + (f"  {statuses}" if bad else ""))
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
