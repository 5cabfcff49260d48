"""Schedules and the daily digest fire once per tick across replicas, with a clock the test moves."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from agents.errors import InvalidInputs, SpecError
from agents.loading import parse_spec
from agents.spec import WorkflowSpec
from bot.scheduler import Scheduler, crontab_trigger, fire_times, seen_key
from storage.db import Database
from storage.models import Claim, OutboxMessage
from tests.helpers.runs import all_runs as scheduled_runs
from tests.ops.clock import Clock, clocked_engine


class CountingRunner:
    def __init__(self) -> None:
        self.kicks = 0

    def kick(self) -> None:
        self.kicks += 1


def scheduled(cron: str = "*/5 * * * *", tz: str = "UTC", **extra: Any) -> WorkflowSpec:
    return parse_spec({
        "name": "every-five",
        "steps": [{"name": "draft", "tool": "tests.ops.clock:write_draft"}],
        "schedule": {"cron": cron, "timezone": tz, "inputs": {}},
        **extra,
    }, "sched.yaml")


def make(db: Database, clock: Clock, spec: WorkflowSpec, owner: str = "replica-a", **kw: Any) -> tuple[Scheduler, CountingRunner]:
    engine = clocked_engine(db, clock, owner)
    runner = CountingRunner()
    return Scheduler(db=db, engine=engine, runner=runner, specs={spec.name: spec}, owner=owner, clock=clock, **kw), runner


async def claim_keys(db: Database) -> list[str]:
    """The once-only keys taken (ticks, digests), the schedules' first-seen records aside."""
    async with db.sessions() as session:
        return sorted(k for k in (await session.scalars(select(Claim.key))).all() if not k.startswith("schedule-seen:"))


T0 = datetime(2026, 3, 2, 10, 0, 0, 500_000, tzinfo=timezone.utc)
SEEN = T0 - timedelta(minutes=1)  # the schedule was first seen just before the tick a test starts at


async def test_a_tick_fires_one_scheduled_run_once(db: Database) -> None:
    clock = Clock(T0)
    sched, runner = make(db, clock, scheduled())
    assert await sched.fire_due(SEEN) == []
    [run_id] = await sched.fire_due()
    assert await sched.fire_due() == []  # the same tick again: nothing
    assert await sched.fire_due(clock.advance(minutes=4)) == []  # before the next tick
    assert len(await sched.fire_due(clock.advance(minutes=1))) == 1  # 10:05:00.5
    runs = await scheduled_runs(db)
    assert len(runs) == 2 and runner.kicks == 2
    first = next(r for r in runs if r.id == run_id)
    assert (first.started_by, first.trigger, first.status, first.workflow) == ("schedule", "schedule", "queued", "every-five")
    assert await claim_keys(db) == [
        "schedule:every-five:2026-03-02T10:00:00+00:00", "schedule:every-five:2026-03-02T10:05:00+00:00"]


async def test_two_schedulers_on_one_database_fire_a_tick_once(two_databases: tuple[Database, Database]) -> None:
    clock = Clock(T0)
    first, second = two_databases
    a, _ = make(first, clock, scheduled(), owner="replica-a")
    b, _ = make(second, clock, scheduled(), owner="replica-b")
    await a.fire_due(SEEN)
    results = await asyncio.gather(a.fire_due(), b.fire_due(), a.fire_due(), b.fire_due())
    assert sum(len(r) for r in results) == 1
    assert len(await scheduled_runs(first)) == 1


async def test_missed_ticks_within_the_grace_window_run_once(db: Database) -> None:
    clock = Clock(T0)
    sched, _ = make(db, clock, scheduled(), grace_seconds=3600)
    await sched.fire_due(SEEN)
    await sched.fire_due()  # 10:00
    with capture_logs() as logs:
        started = await sched.fire_due(clock.advance(minutes=32))  # 10:05 ... 10:30 were missed
    assert len(started) == 1
    assert (await claim_keys(db))[-1] == "schedule:every-five:2026-03-02T10:30:00+00:00"
    assert [e for e in logs if e["event"] == "schedule.ticks_coalesced"][0]["missed"] == 5
    assert not [e for e in logs if e["event"] == "schedule.tick_skipped"]


async def test_ticks_older_than_the_grace_window_are_skipped_and_logged(db: Database) -> None:
    clock = Clock(T0)
    sched, _ = make(db, clock, scheduled("0 * * * *"), grace_seconds=900)
    await sched.fire_due(SEEN)
    await sched.fire_due()  # 10:00
    with capture_logs() as logs:
        started = await sched.fire_due(clock.set(datetime(2026, 3, 2, 12, 30, tzinfo=timezone.utc)))
    assert started == []  # 11:00 and 12:00 are more than 15 minutes old
    [skipped] = [e for e in logs if e["event"] == "schedule.tick_skipped"]
    assert skipped["count"] == 2 and skipped["workflow"] == "every-five"
    assert skipped["first"] == "2026-03-02T11:00:00+00:00" and skipped["last"] == "2026-03-02T12:00:00+00:00"
    # ... while a recent one still runs: 13:00 came due 10 minutes ago.
    assert len(await sched.fire_due(clock.set(datetime(2026, 3, 2, 13, 10, tzinfo=timezone.utc)))) == 1


async def test_on_a_fresh_database_a_schedule_waits_for_its_first_tick(db: Database) -> None:
    """Ticks from before a schedule was first seen are not missed ticks: nothing runs at first start."""
    clock = Clock(datetime(2026, 3, 2, 10, 59, 30, tzinfo=timezone.utc))
    sched, _ = make(db, clock, scheduled("* * * * *"), grace_seconds=3600)
    with capture_logs() as logs:
        assert await sched.fire_due() == []  # 59 ticks came due in the last hour, none since first seen
    assert not [e for e in logs if e["event"] in ("schedule.ticks_coalesced", "schedule.tick_skipped")]
    assert [e["workflow"] for e in logs if e["event"] == "schedule.first_seen"] == ["every-five"]
    restarted, _ = make(db, clock, scheduled("* * * * *"), grace_seconds=3600)
    assert await restarted.fire_due(clock.advance(seconds=20)) == []  # 10:59:50, still no tick since
    assert len(await restarted.fire_due(clock.advance(seconds=15))) == 1  # 11:00:05: the first tick
    assert await claim_keys(db) == ["schedule:every-five:2026-03-02T11:00:00+00:00"]


async def test_replicas_starting_together_on_a_fresh_database_agree_on_when_a_schedule_was_first_seen(
    two_databases: tuple[Database, Database],
) -> None:
    first, second = two_databases
    clock = Clock(datetime(2026, 3, 2, 10, 2, tzinfo=timezone.utc))
    a, _ = make(first, clock, scheduled(), owner="replica-a")
    b, _ = make(second, Clock(clock.now + timedelta(seconds=1)), scheduled(), owner="replica-b")
    assert await asyncio.gather(a.fire_due(), b.fire_due()) == [[], []]
    async with first.sessions() as session:
        [seen] = (await session.scalars(select(Claim).where(Claim.key.startswith("schedule-seen:")))).all()
    assert seen.key == seen_key("every-five", "*/5 * * * *", "UTC")
    assert seen.at in (clock.now, clock.now + timedelta(seconds=1))


async def test_downtime_within_the_grace_window_fires_the_latest_missed_tick_once(db: Database) -> None:
    clock = Clock(datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc))
    before, _ = make(db, clock, scheduled("0 * * * *"), grace_seconds=3600)
    assert await before.fire_due() == []  # first seen at 09:30
    assert len(await before.fire_due(clock.set(datetime(2026, 3, 2, 10, 0, 1, tzinfo=timezone.utc)))) == 1
    # Down from 10:05 to 12:20: 11:00 is past the grace window, 12:00 is not.
    after, _ = make(db, clock, scheduled("0 * * * *"), grace_seconds=3600)
    with capture_logs() as logs:
        started = await after.fire_due(clock.set(datetime(2026, 3, 2, 12, 20, tzinfo=timezone.utc)))
    assert len(started) == 1
    assert [e["count"] for e in logs if e["event"] == "schedule.tick_skipped"] == [1]
    assert await after.fire_due(clock.advance(minutes=1)) == []
    assert await claim_keys(db) == ["schedule:every-five:2026-03-02T10:00:00+00:00", "schedule:every-five:2026-03-02T12:00:00+00:00"]


async def test_a_changed_cron_starts_fresh_and_does_not_fire_the_old_ones_ticks(db: Database) -> None:
    clock = Clock(datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc))
    old, _ = make(db, clock, scheduled("0 * * * *"), grace_seconds=3600)
    await old.fire_due()
    assert len(await old.fire_due(clock.set(datetime(2026, 3, 2, 10, 0, 1, tzinfo=timezone.utc)))) == 1
    # Redeployed at 12:20 with a new cron: the old cron's 12:00 would be caught up, the new one's are not.
    new, _ = make(db, clock, scheduled("*/20 * * * *"), grace_seconds=3600)
    assert await new.fire_due(clock.set(datetime(2026, 3, 2, 12, 20, 30, tzinfo=timezone.utc))) == []
    assert await new.fire_due(clock.advance(minutes=19)) == []
    assert len(await new.fire_due(clock.advance(minutes=1))) == 1  # 12:40:30: the new cron's first tick
    assert await claim_keys(db) == ["schedule:every-five:2026-03-02T10:00:00+00:00", "schedule:every-five:2026-03-02T12:40:00+00:00"]
    assert seen_key("every-five", "0 * * * *", "UTC") != seen_key("every-five", "0 * * * *", "Europe/London")


async def test_the_claim_and_the_run_commit_together(db: Database) -> None:
    """A run that cannot be created leaves no claim behind: the tick is not lost, it is retried."""
    # `overseer check` refuses such a spec; built unchecked here to make the run's creation fail.
    spec = WorkflowSpec.model_validate(
        scheduled().snapshot() | {"inputs": {"url": {"type": "string", "required": True}}}
    )
    clock = Clock(T0)
    sched, _ = make(db, clock, spec)
    await sched.fire_due(SEEN)
    with pytest.raises(InvalidInputs):
        await sched.fire_schedule("every-five")
    assert await claim_keys(db) == [] and await scheduled_runs(db) == []


def test_schedule_inputs_are_checked_when_the_spec_loads() -> None:
    with pytest.raises(SpecError, match="schedule.inputs: missing required input 'url'"):
        scheduled(inputs={"url": {"type": "string", "required": True}})


async def test_the_digest_is_announced_once_a_day_across_replicas(two_databases: tuple[Database, Database]) -> None:
    clock = Clock(datetime(2026, 3, 2, 9, 0, 30, tzinfo=timezone.utc))
    first, second = two_databases
    kw = {"digest_cron": "0 9 * * *", "digest_tz": "Europe/London", "digest_channel": "C0DIGEST"}
    a, _ = make(first, clock, scheduled(), owner="replica-a", **kw)
    b, _ = make(second, clock, scheduled(), owner="replica-b", **kw)
    assert sorted(await asyncio.gather(a.fire_digest(), b.fire_digest())) == [False, True]
    assert await a.fire_digest(clock.advance(minutes=10)) is False
    assert await b.fire_digest(clock.advance(days=1)) is True
    async with first.sessions() as session:
        messages = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    assert [(m.kind, m.stream, m.run_id) for m in messages] == [("digest", "digest", None)] * 2
    payload = messages[0].payload
    assert payload["channel"] == "C0DIGEST" and payload["days"] == 1
    assert payload["window_end"] == "2026-03-02T09:00:00+00:00"
    assert [w["workflow"] for w in payload["workflows"]] == ["every-five"]
    assert await claim_keys(first) == ["digest:2026-03-02", "digest:2026-03-03"]


async def test_without_a_digest_channel_the_digest_is_skipped_with_a_log_line(db: Database) -> None:
    sched, _ = make(db, Clock(datetime(2026, 3, 2, 9, 1, tzinfo=timezone.utc)), scheduled())
    with capture_logs() as logs:
        assert await sched.fire_digest() is False
    assert [e["event"] for e in logs] == ["digest.skipped"]
    assert await claim_keys(db) == []


def test_crontab_weekday_numbers_mean_what_crontab_says_in_the_given_time_zone() -> None:
    trigger = crontab_trigger("0 9 * * 1-5", "Europe/London")
    week = fire_times(trigger, datetime(2026, 6, 6, tzinfo=timezone.utc), datetime(2026, 6, 14, tzinfo=timezone.utc))
    assert [t.strftime("%a %H:%M") for t in week] == [f"{d} 08:00" for d in ("Mon", "Tue", "Wed", "Thu", "Fri")]  # BST
    sundays = fire_times(crontab_trigger("30 7 * * 0", "UTC"), datetime(2026, 6, 1, tzinfo=timezone.utc),
                         datetime(2026, 6, 15, tzinfo=timezone.utc))
    assert [t.strftime("%a %d") for t in sundays] == ["Sun 07", "Sun 14"]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "61 * * * *"}, "sched.yaml: schedule: bad cron expression '61 * * * *'"),
        ({"cron": "0 9 * *"}, "sched.yaml: schedule: bad cron expression '0 9 * *'"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "sched.yaml: schedule: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_cron_or_time_zone_is_refused_in_one_clear_line(schedule: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"name": "x", "steps": [{"name": "s", "tool": "fetch_page"}], "schedule": schedule}, "sched.yaml")
    assert len(str(info.value).splitlines()) == 1
    assert str(info.value).startswith(message)


async def test_start_schedules_the_jobs_in_the_running_loop_and_shutdown_stops_them(db: Database) -> None:
    sched, _ = make(db, Clock(T0), scheduled(), digest_channel=None, deadline_seconds=30)
    await sched.start()
    try:
        assert sched._aps is not None
        assert sorted(job.id for job in sched._aps.get_jobs()) == ["deadlines", "digest", "schedule:every-five"]
    finally:
        await sched.shutdown()
    assert sched._aps is None
