"""Engine overhead per step (recording, retry wrapper, logging) over a bare litellm call.

A 3-step workflow against a zero-latency fake model, several hundred runs. Each round times one
run through the engine and, alternately, three bare `litellm.acompletion` calls to the same server;
the overhead per step is (engine run - 3 bare calls) / 3. Prints median and p95 in ms, on SQLite,
on PostgreSQL (with --pg-url, or OVERSEER_TEST_DATABASE_URL) and, as the anchor, for LangGraph with
its SQLite checkpointer running the same three calls in the same process (`pip install -e ".[bench]"`).

    python bench/step_overhead.py [--runs 300] [--url sqlite:///path.db] [--pg-url postgresql://...]
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
from typing import TypedDict

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


async def bare_call(api_base: str, prompt: str) -> str:
    response = await _litellm().acompletion(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": prompt}], api_base=api_base,
        api_key="sk-bench", num_retries=0, max_retries=0, timeout=60,
    )
    return response.choices[0].message.content


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


class GraphState(TypedDict, total=False):
    """LangGraph's state for the three steps."""

    topic: str
    one: str
    two: str
    three: str


def line(label: str, values: list[float]) -> str:
    return f"  {label:<29}median {statistics.median(values):6.2f} ms   p95 {pct(values, 0.95):6.2f} ms"


async def measure(api_base: str, run_once, runs: int, warmup: int) -> tuple[list[float], list[float], list[float]]:  # type: ignore[no-untyped-def]
    """(bare per step, full per step, overhead per step) in ms over `runs` alternating rounds."""
    for _ in range(warmup):
        await bare_calls(api_base)
        await run_once()
    overheads, bare, full = [], [], []
    for i in range(runs):
        # Alternate the order so drift (GC, caches, the WAL) hits both sides alike.
        if i % 2:
            b = await bare_calls(api_base)
            e = await run_once()
        else:
            e = await run_once()
            b = await bare_calls(api_base)
        bare.append(b / 3 * 1000)
        full.append(e / 3 * 1000)
        overheads.append((e - b) / 3 * 1000)
    return bare, full, overheads


async def overseer(url: str, api_base: str, runs: int, warmup: int) -> list[float]:
    db = connect(url)
    await upgrade(db)
    engine = Engine(db, settings=EngineSettings(owner="bench", secrets={"BENCH_KEY": "sk-bench"}))
    spec = spec_for(api_base)
    try:
        bare, full, overheads = await measure(api_base, lambda: engine_run(engine, spec), runs, warmup)
    finally:
        await db.dispose()
    print(f"Overseer on {url.split(':', 1)[0]}, {runs} runs x 3 steps")
    print(line("bare litellm call per step", bare))
    print(line("engine per step", full))
    print(line("overhead per step", overheads))
    return overheads


async def langgraph(path: str, api_base: str, runs: int, warmup: int) -> list[float] | None:
    """The same three calls as a LangGraph StateGraph, checkpointed by AsyncSqliteSaver after every node."""
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        from langgraph.graph import END, START, StateGraph
    except ImportError:
        print("LangGraph: not installed (pip install -e '.[bench]')")
        return None
    async def one(state):  # type: ignore[no-untyped-def]
        return {"one": await bare_call(api_base, f"Write about {state['topic']}")}

    async def two(state):  # type: ignore[no-untyped-def]
        return {"two": await bare_call(api_base, f"Shorten: {state['one']}")}

    async def three(state):  # type: ignore[no-untyped-def]
        return {"three": await bare_call(api_base, f"Title for: {state['two']}")}

    builder = StateGraph(GraphState)
    for name, node in (("one", one), ("two", two), ("three", three)):
        builder.add_node(name, node)
    builder.add_edge(START, "one")
    builder.add_edge("one", "two")
    builder.add_edge("two", "three")
    builder.add_edge("three", END)
    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        graph = builder.compile(checkpointer=saver)
        counter = iter(range(10**9))

        async def run_once() -> float:
            started = time.perf_counter()
            out = await graph.ainvoke({"topic": "tea"}, {"configurable": {"thread_id": f"t{next(counter)}"}})
            elapsed = time.perf_counter() - started
            assert out["three"] == "ok", out
            return elapsed

        bare, full, overheads = await measure(api_base, run_once, runs, warmup)
    print(f"LangGraph {_version('langgraph')} + AsyncSqliteSaver ({_version('langgraph-checkpoint-sqlite')}), {runs} runs x 3 steps")
    print(line("bare litellm call per step", bare))
    print(line("graph per step", full))
    print(line("overhead per step", overheads))
    return overheads


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--url", help="SQLite database URL (default: a fresh SQLite file)")
    parser.add_argument("--pg-url", default=os.environ.get("OVERSEER_TEST_DATABASE_URL"),
                        help="PostgreSQL URL to measure too (default: $OVERSEER_TEST_DATABASE_URL; use an empty database)")
    args = parser.parse_args()
    # Logging is part of the overhead measured: render JSON lines, to nowhere.
    configure_logging(fmt="json", level="info", stream=open(os.devnull, "w"))  # noqa: SIM115
    folder = tempfile.mkdtemp()
    url = args.url or f"sqlite:///{folder}/bench.db"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"step overhead over a bare litellm.acompletion (zero-latency fake model; load average {load})")
    with FakeModel() as fake:
        fake.default = Reply.text("ok")
        ours = await overseer(url, fake.api_base, args.runs, args.warmup)
        if args.pg_url:
            pg = await overseer(args.pg_url, fake.api_base, args.runs, args.warmup)
        theirs = await langgraph(f"{folder}/langgraph.db", fake.api_base, args.runs, args.warmup)
    print("targets: SQLite median <= 1.5 ms, p95 <= 3 ms, <= 0.5x LangGraph; PostgreSQL median <= 3 ms")
    print(f"  SQLite   median {statistics.median(ours):.2f} ms, p95 {pct(ours, 0.95):.2f} ms")
    if args.pg_url:
        print(f"  PostgreSQL median {statistics.median(pg):.2f} ms, p95 {pct(pg, 0.95):.2f} ms")
    if theirs:
        print(f"  SQLite / LangGraph (medians): {statistics.median(ours) / statistics.median(theirs):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
