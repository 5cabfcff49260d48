"""Time the checkpoint deadline scan (agents/deadlines.check_deadlines) with many checkpoints waiting.

    python bench/deadlines.py [--pending 10000] [--due 50] [--url sqlite:///path.db]

Fills the database with `--pending` runs waiting at a checkpoint that has a reminder and a timeout
(bulk inserts, as the engine leaves them), of which `--due` are past their reminder. Times the first
check (which, after the upgrade, dates every checkpoint once), then the checks that follow every 30 s
in steady state: with nothing due and with `--due` newly due. Prints each in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text  # noqa: E402

from agents.deadlines import check_deadlines  # noqa: E402
from agents.loading import parse_spec  # noqa: E402
from storage.db import connect  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Run, StepRun  # noqa: E402

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
SPEC = parse_spec({
    "name": "bench-deadlines", "approvers": ["U0ALICE"], "channel": "C0BENCH", "inputs": {"ticket": {"type": "string"}},
    "steps": [{"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "Draft a reply to {{ inputs.ticket }} " * 10,
               "checkpoint": {"timeout": "24h", "remind_after": "4h", "escalate_to": ["U0BOB"], "on_timeout": "reject"}}],
}, "bench.yaml")


async def fill(db, pending: int, due: int) -> None:  # type: ignore[no-untyped-def]
    spec = SPEC.model_dump(mode="json")
    runs, steps = [], []
    for i in range(pending):
        # `due` of them waited 4 h 10 min (their reminder is due), the rest 1 h.
        since = NOW - (timedelta(hours=4, minutes=10) if i < due else timedelta(hours=1))
        runs.append({"id": f"{i:032x}", "workflow": SPEC.name, "inputs": {"ticket": "t"}, "spec": spec,
                     "started_by": "bench", "trigger": "cli", "status": "awaiting_approval", "created_at": since,
                     "started_at": since, "updated_at": since, "current_step": "draft"})
        steps.append({"run_id": f"{i:032x}", "step": "draft", "position": 0, "status": "awaiting_approval",
                      "attempts": 1, "awaiting_since": since, "started_at": since, "finished_at": since,
                      "output": "A draft."})
    async with db.sessions.begin() as session:
        for start in range(0, pending, 2000):
            await session.execute(insert(Run.__table__), runs[start:start + 2000])
            await session.execute(insert(StepRun.__table__), steps[start:start + 2000])


async def timed(db, now: datetime) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    done = await check_deadlines(db, now=now)
    return (time.perf_counter() - started) * 1000, len(done)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=50)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = connect(url)
    await upgrade(db)
    if not db.is_sqlite:
        async with db.engine.begin() as conn:
            await conn.execute(text("TRUNCATE runs, step_runs, attempts, decisions, events, outbox RESTART IDENTITY CASCADE"))
    await fill(db, args.pending, args.due)
    first, n = await timed(db, NOW)
    print(f"deadline scan, {args.pending:,} checkpoints waiting on {url.split(':', 1)[0]}:")
    print(f"  first check: {first:8.1f} ms ({n} reminded)")
    quiet = [(await timed(db, NOW + timedelta(seconds=30 * k)))[0] for k in range(1, 6)]
    print(f"  nothing due: {statistics.median(quiet):8.1f} ms (median of 5)")
    # Push `due` more checkpoints past their reminder, as time passing would.
    async with db.sessions.begin() as session:
        await session.execute(
            StepRun.__table__.update()
            .where(StepRun.run_id.in_([f"{i:032x}" for i in range(args.due, 2 * args.due)]))
            .values(awaiting_since=NOW - timedelta(hours=4, minutes=10))
        )
        if "due_at" in StepRun.__table__.c:
            await session.execute(
                StepRun.__table__.update()
                .where(StepRun.run_id.in_([f"{i:032x}" for i in range(args.due, 2 * args.due)]))
                .values(due_at=None)
            )
    some, n = await timed(db, NOW + timedelta(minutes=5))
    print(f"  {args.due} due:      {some:8.1f} ms ({n} reminded)")
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
