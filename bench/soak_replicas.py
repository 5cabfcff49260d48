"""Soak: a workflow scheduled every minute, two `overseer serve` replicas on PostgreSQL, one killed along
the way. Prints, per minute, how many runs its tick started, then what the digest reports.

    python bench/soak_replicas.py [--minutes 10] [--kill-after 4] [--url postgresql://postgres@127.0.0.1/test]

Needs the local PostgreSQL; creates and drops a database of its own. Talks only to loopback fakes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from agents.digest import compute_digest  # noqa: E402
from bot.digest import digest_text  # noqa: E402
from storage.db import connect  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Claim, Run, utcnow  # noqa: E402
from tests.fakes.fake_model import FakeModel, Reply  # noqa: E402
from tests.fakes.fake_slack import FakeSlack  # noqa: E402
from tests.ops.test_replicas import SPEC, Replica, serve_env  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--kill-after", type=int, default=4, help="minutes before one replica is SIGKILLed")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    base = make_url(args.url)
    name = f"overseer_soak_{os.getpid()}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = base.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    db = connect(url)
    await upgrade(db)
    folder = Path(tempfile.mkdtemp())
    (folder / "minutely.yaml").write_text(SPEC)
    started = utcnow()
    with FakeModel() as model, FakeSlack() as slack:
        model.default = Reply.slow(2.0, Reply.text("ok"))  # steps long enough to be killed mid-way
        env = serve_env(url, folder, model, slack) | {"OVERSEER_LEASE_SECONDS": "10"}
        replicas = [await Replica(env, folder / f"{n}.log").start() for n in "ab"]
        for replica in replicas:
            await replica.healthy()
        deadline = time.monotonic() + args.minutes * 60
        killed = False
        while time.monotonic() < deadline:
            await asyncio.sleep(5)
            if not killed and time.monotonic() > deadline - (args.minutes - args.kill_after) * 60:
                os.kill(replicas[0].pid, signal.SIGKILL)
                killed = True
                print(f"{utcnow():%H:%M:%S} killed replica a (pid {replicas[0].pid})", flush=True)
        await asyncio.sleep(20)  # let the last tick's run finish
        for replica in replicas:
            await replica.stop()
        async with db.sessions() as session:
            runs = (await session.scalars(select(Run).where(Run.trigger == "schedule"))).all()
            ticks = (await session.scalars(select(Claim.key).where(Claim.key.startswith("schedule:")))).all()
        per_minute = Counter(r.created_at.strftime("%H:%M") for r in runs)
        print(f"ticks claimed: {len(ticks)}; scheduled runs: {len(runs)}; statuses: {Counter(r.status for r in runs)}")
        print("runs per minute:", dict(sorted(per_minute.items())))
        print(f"slack parent posts: {sum(1 for c in slack.calls_to('chat.postMessage') if c.answered_ok and not c.args.get('thread_ts'))}")
        digest = await compute_digest(db, now=utcnow(), days=1)
        print(digest_text(digest.to_payload()))
        print(f"window {started:%H:%M:%S}–{utcnow():%H:%M:%S} UTC")
    await db.dispose()
    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
