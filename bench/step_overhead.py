"""Engine overhead per step (recording, retry wrapper, logging) over a bare litellm call.

A 3-step workflow against a zero-latency fake model, several hundred runs. Each round times one
run through the engine and, alternately, three bare `litellm.acompletion` calls to the same server;
the overhead per step is (engine run - 3 bare calls) / 3. Prints median and p95 in ms.

    python bench/step_overhead.py [--runs 300] [--url sqlite:///path.db]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.engine import Engine, EngineSettings  # noqa: E402
from agents.model_call import _litellm  # noqa: E402
from agents.loading import parse_spec  # noqa: E402
from bot.logs import configure_logging  # noqa: E402
from storage.db import connect  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from tests.fakes.fake_model import FakeModel, Reply  # noqa: E402


def spec_for(api_base: str):  # type: ignore[no-untyped-def]
    step = {"model": "openai/gpt-4o-mini", "api_base": api_base, "api_key_env": "BENCH_KEY"}
    return parse_spec({"name": "bench", "inputs": {"topic": {"default": "tea"}}, "steps": [
        {"name": "one", "prompt": "Write about {{ inputs.topic }}", **step},
        {"name": "two", "prompt": "Shorten: {{ steps.one.output }}", **step},
        {"name": "three", "prompt": "Title for: {{ steps.two.output }}", **step},
    ]}, "bench.yaml")


async def bare_calls(api_base: str) -> float:
    lite = _litellm()
    started = time.perf_counter()
    for prompt in ("Write about tea", "Shorten: ok", "Title for: ok"):
        await lite.acompletion(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": prompt}], api_base=api_base,
            api_key="sk-bench", num_retries=0, max_retries=0, timeout=60,
        )
    return time.perf_counter() - started


async def engine_run(engine: Engine, spec) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    run_id = await engine.start(spec, {}, started_by="bench")
    status = await engine.advance(run_id)
    elapsed = time.perf_counter() - started
    assert status == "succeeded", status
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    # Logging is part of the overhead measured: render JSON lines, to nowhere.
    configure_logging(fmt="json", level="info", stream=open(os.devnull, "w"))  # noqa: SIM115
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = connect(url)
    await upgrade(db)
    engine = Engine(db, settings=EngineSettings(owner="bench", secrets={"BENCH_KEY": "sk-bench"}))
    with FakeModel() as fake:
        fake.default = Reply.text("ok")
        spec = spec_for(fake.api_base)
        for _ in range(args.warmup):
            await bare_calls(fake.api_base)
            await engine_run(engine, spec)
        overheads, bare, full = [], [], []
        for i in range(args.runs):
            # Alternate the order so drift (GC, caches, the WAL) hits both sides alike.
            if i % 2:
                b = await bare_calls(fake.api_base)
                e = await engine_run(engine, spec)
            else:
                e = await engine_run(engine, spec)
                b = await bare_calls(fake.api_base)
            bare.append(b / 3 * 1000)
            full.append(e / 3 * 1000)
            overheads.append((e - b) / 3 * 1000)
    await db.dispose()
    backend = url.split(":", 1)[0]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"step overhead on {backend}, {args.runs} runs x 3 steps (zero-latency fake model; load average {load})")
    print(f"  bare litellm call per step   median {statistics.median(bare):6.2f} ms   p95 {pct(bare, 0.95):6.2f} ms")
    print(f"  engine per step              median {statistics.median(full):6.2f} ms   p95 {pct(full, 0.95):6.2f} ms")
    print(f"  overhead per step            median {statistics.median(overheads):6.2f} ms   p95 {pct(overheads, 0.95):6.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
