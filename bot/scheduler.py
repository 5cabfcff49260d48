"""Schedules, the daily digest and checkpoint deadlines, on APScheduler 3 inside the bot's asyncio loop.

Exactly once across replicas
----------------------------
A schedule tick is identified by `schedule:{workflow}:{tick in UTC, ISO}` and the digest by
`digest:{date in the digest's time zone}`: once-only keys in the `claims` table (primary key; the
first INSERT wins, the others insert nothing). For a schedule, the claim and the new run are written
in ONE transaction: the engine hands back the writes that start a run (Engine.start_writes) and they
run here after the claim, so either both the claim and the run (with its steps and its run_started
announcement) commit, or neither does. There is no crash window: a replica that dies before the commit leaves no claim, and the
tick is fired by another replica (or by this one when it comes back, within the grace window). The
digest is computed first (reads only), then its claim and its outbox message are written in one
transaction, with the same property.

Which tick fires
----------------
Every firing (the APScheduler cron job, or `fire_due` on start and in tests) looks at the fire times of
the cron expression in (since, now], and fires only the latest of them, and only if it is within
`grace_seconds` of now. `since` is the later of the last recorded tick and the time this schedule
(workflow, cron and time zone) was first seen: catch-up covers downtime only. A new schedule (or a fresh
database) therefore waits for its first tick instead of counting the ticks from before it existed as
missed, and a changed cron starts fresh, since its first-seen time is when the change was first loaded.
First seen is the claim `schedule-seen:{workflow}:{hash of cron and tz}`, inserted once, its time in
the `at` column. Tick keys stay per workflow, not per cron: during a rolling deploy a replica on the old
cron and one on the new cannot both fire the same instant. Several missed ticks therefore run once; ticks older than the grace window are
skipped and logged (`schedule.tick_skipped`). The same logic serves live ticks (the latest fire time is
the one that just came due) and catch-up after downtime, so the two cannot disagree.

Cron day-of-week numbers: APScheduler 3's CronTrigger.from_crontab reads 0 as Monday, unlike crontab
(0 = Sunday). `crontab_trigger` translates numeric day-of-week fields to names first, so
"0 9 * * 1-5" means Monday to Friday, as anyone writing crontab expects.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agents import outbox
from agents.deadlines import check_deadlines
from agents.digest import compute_digest
from agents.engine import Engine
from agents.cron import crontab_trigger
from agents.spec import WorkflowSpec
from storage import claim_queries
from storage.db import Database, run_writes
from storage.models import utcnow

log = structlog.get_logger("overseer.scheduler")

_MAX_ENUMERATED = 100_000  # fire times counted when logging skipped ticks


class Kickable(Protocol):
    def kick(self) -> None: ...

def fire_times(trigger: CronTrigger, after: datetime, until: datetime, limit: int = _MAX_ENUMERATED) -> list[datetime]:
    """The trigger's fire times t with after < t <= until (UTC), at most `limit` of them."""
    found: list[datetime] = []
    t = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while t is not None and t <= until and len(found) < limit:
        found.append(t.astimezone(timezone.utc))
        t = trigger.get_next_fire_time(t, t)
    return found


def tick_key(workflow: str, tick: datetime) -> str:
    return f"schedule:{workflow}:{tick.astimezone(timezone.utc).isoformat()}"


def seen_key(workflow: str, cron: str, tz: str) -> str:
    """The claim key holding when this schedule (workflow, cron, time zone) was first seen."""
    digest = hashlib.sha256(f"{cron}\n{tz}".encode()).hexdigest()[:16]
    return f"schedule-seen:{workflow}:{digest}"


def _key_tick(key: str, prefix: str) -> datetime | None:
    """The tick recorded in a claim key made by tick_key."""
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(key.removeprefix(prefix)).astimezone(timezone.utc)
    return None


class Scheduler:
    """Fires scheduled runs, the daily digest and deadline checks; safe to run in several replicas."""

    def __init__(
        self,
        *,
        db: Database,
        engine: Engine,
        runner: Kickable | None,
        specs: Mapping[str, WorkflowSpec],
        digest_cron: str = "0 9 * * *",
        digest_tz: str = "UTC",
        digest_channel: str | None = None,
        grace_seconds: float = 3600.0,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
        deadline_seconds: float = 30.0,
    ) -> None:
        self.db = db
        self.engine = engine
        self.runner = runner
        self.specs = {name: spec for name, spec in specs.items() if spec.schedule is not None}
        self.all_workflows = sorted(specs)
        self.digest_tz = digest_tz
        self.digest_channel = digest_channel
        self.grace = timedelta(seconds=grace_seconds)
        self.owner = owner
        self.clock = clock
        self.deadline_seconds = deadline_seconds
        self.triggers: dict[str, CronTrigger] = {
            name: crontab_trigger(spec.schedule.cron, spec.schedule.timezone)  # type: ignore[union-attr]
            for name, spec in self.specs.items()
        }
        self.digest_trigger = crontab_trigger(digest_cron, digest_tz)
        self._aps: AsyncIOScheduler | None = None

    # --- what tests (and the jobs) call ------------------------------------------------------------

    async def fire_due(self, now: datetime | None = None) -> list[str]:
        """Fire every schedule's latest due tick (once across replicas); returns the run ids started."""
        now = now or self.clock()
        started = []
        for name in self.specs:
            run_id = await self.fire_schedule(name, now)
            if run_id:
                started.append(run_id)
        return started

    async def fire_schedule(self, workflow: str, now: datetime | None = None) -> str | None:
        """Fire `workflow`'s latest tick since it last ticked or was first seen, if within the grace window."""
        now = (now or self.clock()).astimezone(timezone.utc)
        spec = self.specs[workflow]
        assert spec.schedule is not None
        trigger = self.triggers[workflow]
        since = await self._since(workflow, spec.schedule.cron, spec.schedule.timezone, now)
        horizon = now - self.grace
        if since < horizon:
            skipped = fire_times(trigger, since, horizon)
            if skipped:
                log.warning(
                    "schedule.tick_skipped", workflow=workflow, count=len(skipped), first=skipped[0].isoformat(),
                    last=skipped[-1].isoformat(), grace_s=self.grace.total_seconds(),
                )
        due = fire_times(trigger, max(since, horizon), now)
        if not due:
            return None
        tick = due[-1]
        if len(due) > 1:
            log.info("schedule.ticks_coalesced", workflow=workflow, missed=len(due) - 1, tick=tick.isoformat())
        run_id = await self._start_claimed(tick_key(workflow, tick), spec, dict(spec.schedule.inputs))
        if run_id is None:
            log.debug("schedule.tick_taken", workflow=workflow, tick=tick.isoformat())
            return None
        log.info("schedule.fired", workflow=workflow, tick=tick.isoformat(), run_id=run_id)
        if self.runner is not None:
            self.runner.kick()
        return run_id

    async def _since(self, workflow: str, cron: str, tz: str, now: datetime) -> datetime:
        """The later of the last recorded tick and when this schedule was first seen (recorded now if new)."""
        prefix = f"schedule:{workflow}:"
        async with self.db.sessions.begin() as session:
            last_key = await claim_queries.last_claim_key(session=session, prefix=prefix)
            seen = await claim_queries.first_claim_at(
                session=session, key=seen_key(workflow, cron, tz), owner=self.owner, at=now)
        last = _key_tick(last_key, prefix) if last_key else None
        if seen == now:
            log.info("schedule.first_seen", workflow=workflow, cron=cron, timezone=tz, at=now.isoformat())
        return max(seen, last) if last else seen

    async def _start_claimed(self, key: str, spec: WorkflowSpec, inputs: dict[str, Any]) -> str | None:
        """Claim `key` and start the run in one transaction; None when another replica had the key."""
        run_id, start = self.engine.start_writes(spec, inputs, started_by="schedule", trigger="schedule")
        async with self.db.sessions.begin() as session:
            # The claim goes first and is guarded: a key taken already stops the rest from running.
            if not await run_writes(session, [claim_queries.claim_write(key=key, owner=self.owner), *start]):
                return None
        return run_id

    async def fire_digest(self, now: datetime | None = None) -> bool:
        """Announce the digest for the latest digest tick due within the grace window, once per day."""
        now = (now or self.clock()).astimezone(timezone.utc)
        due = fire_times(self.digest_trigger, now - self.grace, now)
        if not due:
            return False
        tick = due[-1]
        if not self.digest_channel:
            log.info("digest.skipped", reason="no digest channel (OVERSEER_DIGEST_CHANNEL)")
            return False
        key = f"digest:{tick.astimezone(ZoneInfo(self.digest_tz)).date().isoformat()}"
        async with self.db.sessions() as session:
            if await claim_queries.claim_exists(session=session, key=key):
                return False
        digest = await compute_digest(self.db, now=tick, days=1, workflows=self.all_workflows)
        ready = outbox.DigestReady(channel=self.digest_channel, report=digest.to_payload())
        async with self.db.sessions.begin() as session:
            won = await run_writes(session, [
                claim_queries.claim_write(key=key, owner=self.owner), outbox.message(None, ready, stream="digest"),
            ])
        if won:
            log.info("digest.announced", key=key, channel=self.digest_channel, workflows=len(digest.workflows))
        return won

    async def check_deadlines(self, now: datetime | None = None) -> list[str]:
        """Remind, escalate and expire checkpoints (agents.deadlines)."""
        done = await check_deadlines(self.db, now=now or self.clock())
        if done and self.runner is not None:
            self.runner.kick()
        return done

    # --- running inside the bot's loop -------------------------------------------------------------

    async def start(self) -> None:
        """Catch up on missed ticks, then schedule the jobs on the running asyncio loop."""
        await self._guard("schedule.catch_up_failed", self.fire_due)
        await self._guard("digest.catch_up_failed", self.fire_digest)
        aps = AsyncIOScheduler(timezone=timezone.utc)
        common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": max(int(self.grace.total_seconds()), 1)}
        for name, trigger in self.triggers.items():
            aps.add_job(self._job_schedule, trigger, args=[name], id=f"schedule:{name}", **common)
        aps.add_job(self._job_digest, self.digest_trigger, id="digest", **common)
        aps.add_job(
            self._job_deadlines, IntervalTrigger(seconds=self.deadline_seconds), id="deadlines",
            coalesce=True, max_instances=1,
        )
        aps.start()
        self._aps = aps
        log.info("scheduler.started", schedules=sorted(self.triggers), digest_channel=self.digest_channel)

    async def shutdown(self) -> None:
        """Stop scheduling (jobs already running finish on their own)."""
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None

    async def _guard(self, event: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await fn(*args)
        except Exception:  # noqa: BLE001 - a failed tick must not stop the scheduler
            log.exception(event)
            return None

    async def _job_schedule(self, workflow: str) -> None:
        await self._guard("schedule.fire_failed", self.fire_schedule, workflow)

    async def _job_digest(self) -> None:
        await self._guard("digest.failed", self.fire_digest)

    async def _job_deadlines(self) -> None:
        await self._guard("deadlines.failed", self.check_deadlines)

