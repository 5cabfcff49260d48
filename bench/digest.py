"""Benchmark the digest: fill a database with ~1,000,000 attempts over 30 days, then time compute_digest.

    python bench/digest.py                                  # SQLite file bench-digest.db
    python bench/digest.py --reuse                          # keep an already filled file
    python bench/digest.py --url postgresql://postgres@127.0.0.1:5432/overseer_bench

The database is migrated with the project's migrations, filled with bulk inserts through the raw
driver (sqlite3 executemany; asyncpg COPY) in large batches, analysed, and then the digest over the
last 24 hours is computed several times; the median is printed. Data: ~10 workflows of 2-4 steps,
half with a checkpoint, ~82% of runs succeed, some retries and fallbacks, failures, rejections,
expiries, edits; a run every few seconds for 30 days. Attempts and decisions carry their run's workflow,
as the engine writes them (migration 0006).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import make_url  # noqa: E402

from agents.digest import compute_digest  # noqa: E402
from storage.db import connect  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

END = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)  # the "now" of the benchmark
BATCH_RUNS = 20_000

RUN_COLS = ("id", "workflow", "inputs", "spec", "started_by", "trigger", "status", "current_step", "error",
            "created_at", "started_at", "finished_at", "updated_at", "tokens_in", "tokens_out", "cost_usd")
STEP_COLS = ("id", "run_id", "step", "position", "status", "attempts", "started_at", "finished_at",
             "awaiting_since", "cost_usd")
ATTEMPT_COLS = ("run_id", "step", "number", "model", "fallback_index", "model_attempt", "error_type",
                "tokens_in", "tokens_out", "cost_usd", "latency_ms", "started_at", "workflow")
DECISION_COLS = ("step_run_id", "run_id", "step", "action", "decided_by", "decided_at", "chars_changed",
                 "chars_total", "wait_s", "workflow")
EVENT_COLS = ("run_id", "kind", "actor", "detail", "at")


class Generator:
    """Deterministic synthetic history, produced in batches of runs."""

    def __init__(self, *, attempts: int, workflows: int, days: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.target = attempts
        self.days = days
        self.flows = []
        for i in range(workflows):
            steps = [f"step{j}" for j in range(2 + i % 3)]
            self.flows.append({"name": f"workflow-{i:02d}", "steps": steps, "checkpoint": i % 2 == 0})
        # Each run stores its spec (as the engine does): it makes runs rows wide, as in real life.
        self.spec_json = {
            f["name"]: json.dumps({
                "name": f["name"], "description": "Watch a page and summarise what changed. " * 4,
                "approvers": ["U0ALICE"], "inputs": {"url": {"type": "string", "required": True}},
                "steps": [{"name": s, "model": "openai/gpt-4o-mini", "prompt": "Summarise {{ inputs.url }} " * 20,
                           "output": {"format": "text"}, "retry": {"attempts": 3}} for s in f["steps"]],
            })
            for f in self.flows
        }
        self.attempts = 0
        self.step_id = 0
        self.run_seq = 0
        # ~3.6 attempts per run: spread the runs evenly over the period.
        self.expected_runs = max(attempts // 3.6, 1)
        self.gap = days * 86400 / self.expected_runs

    def batches(self):  # type: ignore[no-untyped-def]
        t = END - timedelta(days=self.days)
        while self.attempts < self.target:
            runs, steps, attempts, decisions, events = [], [], [], [], []
            for _ in range(BATCH_RUNS):
                if self.attempts >= self.target:
                    break
                t += timedelta(seconds=self.rng.expovariate(1 / self.gap))
                if t >= END:
                    t = END - timedelta(days=self.days) + timedelta(seconds=self.rng.random() * self.days * 86400)
                self._run(t, runs, steps, attempts, decisions, events)
            yield runs, steps, attempts, decisions, events

    def _run(self, created: datetime, runs: list, steps: list, attempts: list, decisions: list, events: list) -> None:  # type: ignore[type-arg]
        rng = self.rng
        flow = self.flows[rng.randrange(len(self.flows))]
        self.run_seq += 1
        run_id = f"{self.run_seq:012x}"
        started = created + timedelta(seconds=rng.uniform(0.01, 3))
        roll = rng.random()
        names = flow["steps"]
        fail_at = rng.randrange(len(names)) if roll < 0.08 else None
        cancelled = 0.08 <= roll < 0.09
        clock = started
        status = "succeeded"
        run_cost = 0.0
        for pos, step in enumerate(names):
            self.step_id += 1
            sid = self.step_id
            if fail_at is not None and pos > fail_at:
                steps.append((sid, run_id, step, pos, "pending", 0, None, None, None, 0.0))
                continue
            failing = fail_at == pos
            transient = rng.random() < 0.6
            n = (3 if transient else 1) if failing else (1 if rng.random() < 0.85 else rng.choice((2, 2, 3)))
            step_start = clock
            step_cost = 0.0
            for k in range(1, n + 1):
                latency = rng.uniform(300, 4000)
                ok = not failing and k == n
                cost = rng.uniform(0.0005, 0.01)
                error = None if ok else ("TransientError" if (not failing or transient) else "ContentRefused")
                if not ok and not failing:
                    error = rng.choice(("TransientError", "RateLimited", "BadOutput", "CallTimeout"))
                attempts.append((run_id, step, k, "openai/gpt-4o-mini", 0 if k < 3 else 1, k if k < 3 else 1, error,
                                 1000, 300, cost, latency, clock, flow["name"]))
                clock += timedelta(milliseconds=latency + (rng.uniform(500, 3000) if not ok else 0))
                step_cost += cost
                self.attempts += 1
            run_cost += step_cost
            if failing:
                steps.append((sid, run_id, step, pos, "failed", n, step_start, clock, None, step_cost))
                status = "failed"
                continue
            if flow["checkpoint"] and pos == len(names) - 1:
                waited = rng.expovariate(1 / 1800)
                decided = clock + timedelta(seconds=waited)
                action = rng.choices(("approve", "edit", "reject", "expire"), (70, 20, 6, 4))[0]
                if decided >= END:
                    steps.append((sid, run_id, step, pos, "awaiting_approval", n, step_start, clock, clock, step_cost))
                    status = "awaiting_approval"
                    continue
                total = rng.randrange(200, 3000)
                changed = rng.randrange(1, total // 3) if action == "edit" else 0
                decisions.append((sid, run_id, step, action, "U0BENCH" if action != "expire" else "deadline", decided,
                                  changed, total, waited, flow["name"]))
                step_status = {"approve": "approved", "edit": "edited", "reject": "rejected", "expire": "expired"}[action]
                steps.append((sid, run_id, step, pos, step_status, n, step_start, clock, clock, step_cost))
                clock = decided
                if action in ("reject", "expire"):
                    status = {"reject": "rejected", "expire": "expired"}[action]
                continue
            steps.append((sid, run_id, step, pos, "succeeded", n, step_start, clock, None, step_cost))
        if cancelled and status == "succeeded":
            status = "cancelled"
        finished = None if status == "awaiting_approval" else clock + timedelta(milliseconds=20)
        if finished is not None and finished >= END:
            status, finished = "running", None
        runs.append((run_id, flow["name"], '{"url": "https://example.com/pricing"}', self.spec_json[flow["name"]], "schedule", "schedule", status, None, None, created, started,
                     finished, finished or clock, 1000, 300, run_cost))
        if flow["checkpoint"] and rng.random() < 0.01:
            events.append((run_id, "checkpoint_escalated", "deadline", "{}", clock))


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return v


async def fill(url: str, gen: Generator) -> dict[str, int]:
    counts = {"runs": 0, "step_runs": 0, "attempts": 0, "decisions": 0, "events": 0}
    tables = (("runs", RUN_COLS), ("step_runs", STEP_COLS), ("attempts", ATTEMPT_COLS),
              ("decisions", DECISION_COLS), ("events", EVENT_COLS))
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        conn = sqlite3.connect(make_url(url).database)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        for batch in gen.batches():
            with conn:
                for (table, cols), rows in zip(tables, batch):
                    if rows:
                        conn.executemany(
                            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                            [tuple(_sqlite_value(v) for v in row) for row in rows],
                        )
                        counts[table] += len(rows)
            print(f"  … {counts['attempts']:,} attempts", end="\r", flush=True)
        conn.execute("ANALYZE")
        conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            for batch in gen.batches():
                async with conn.transaction():
                    for (table, cols), rows in zip(tables, batch):
                        if rows:
                            await conn.copy_records_to_table(table, records=rows, columns=list(cols))
                            counts[table] += len(rows)
                print(f"  … {counts['attempts']:,} attempts", end="\r", flush=True)
            await conn.execute("SELECT setval(pg_get_serial_sequence('step_runs', 'id'), (SELECT max(id) FROM step_runs))")
            await conn.execute("VACUUM ANALYZE")  # sets the visibility map: index-only scans from the start
        finally:
            await conn.close()
    print()
    return counts


async def row_count(url: str) -> int:
    from sqlalchemy import text

    db = connect(url)
    try:
        async with db.engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM attempts"))).scalar() or 0)
    except Exception:  # noqa: BLE001 - no table yet
        return 0
    finally:
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="sqlite:///bench-digest.db")
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--workflows", type=int, default=10)
    parser.add_argument("--days", type=int, default=30, help="days of history to fill")
    parser.add_argument("--digest-days", type=int, default=1, help="the digest's window")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="use the database as it is if it is already filled")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    url = args.url
    if make_url(url).get_backend_name() == "sqlite":
        path = Path(make_url(url).database or "")
        if path.exists() and not args.reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
    existing = await row_count(url) if args.reuse else 0
    if existing:
        print(f"reusing {url}: {existing:,} attempts")
    else:
        db = connect(url)
        await upgrade(db)
        if not db.is_sqlite:
            from sqlalchemy import text

            async with db.engine.begin() as conn:
                await conn.execute(text("TRUNCATE runs, step_runs, attempts, decisions, events RESTART IDENTITY CASCADE"))
        await db.dispose()
        print(f"filling {url} with {args.attempts:,} attempts over {args.days} days …")
        t0 = time.perf_counter()
        counts = await fill(url, Generator(attempts=args.attempts, workflows=args.workflows, days=args.days))
        print(f"filled in {time.perf_counter() - t0:.1f}s: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))

    db = connect(url)
    try:
        await compute_digest(db, now=END, days=args.digest_days)  # warm the pool and the caches
        times = []
        digest = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            digest = await compute_digest(db, now=END, days=args.digest_days)
            times.append(time.perf_counter() - t0)
    finally:
        await db.dispose()
    assert digest is not None
    t = digest.totals
    print(f"digest over the last {args.digest_days} day(s), {len(digest.workflows)} workflows: "
          f"median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms ({args.repeat} runs)")
    print(f"  window: {t.started:,} runs started, {t.succeeded:,} succeeded, {t.failed:,} failed, "
          f"{t.attempts:,} attempts, {t.retries:,} retries, {t.approved + t.edited + t.checkpoint_rejected + t.checkpoint_expired:,} decisions, "
          f"success {t.success_rate:.1%}, p50 {t.duration_p50_s:.1f}s, p95 {t.duration_p95_s:.1f}s, cost ${t.cost_usd:,.2f}")
    print(json.dumps({"median_ms": round(statistics.median(times) * 1000, 1), "min_ms": round(min(times) * 1000, 1),
                      "max_ms": round(max(times) * 1000, 1)}))


if __name__ == "__main__":
    asyncio.run(main())
