"""Checkpoint deadlines: remind once, then escalate and expire (or hold), once across checkers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from agents import deadlines
from agents.deadlines import NEVER, check_deadlines
from agents.digest import compute_digest
from agents.engine import Engine
from agents.loading import parse_spec
from agents.spec import WorkflowSpec
from storage import run_queries
from storage.db import Database
from tests.helpers.runs import outbox_of
from tests.ops.clock import Clock, clocked_engine


def spec_with(checkpoint: Any) -> WorkflowSpec:
    return parse_spec({
        "name": "deadline-flow",
        "approvers": ["U0ALICE"],
        "steps": [{"name": "draft", "tool": "tests.ops.clock:write_draft", "checkpoint": checkpoint}],
    }, "deadline.yaml")


DEADLINES = {"timeout": "4h", "remind_after": "2h", "escalate_to": ["U0BOB", "S0ONCALL"], "on_timeout": "reject"}


async def waiting_run(engine: Engine, spec: WorkflowSpec) -> str:
    run_id = await engine.start(spec, {}, started_by="U0ALICE")
    assert await engine.advance(run_id) == "awaiting_approval"
    return run_id


async def announcements(engine: Engine, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(m.kind, m.payload) for m in await outbox_of(engine, run_id)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(db: Database, clock: Clock) -> Engine:
    """The engine, on the clock the test moves."""
    return clocked_engine(db, clock)


async def test_approvers_are_reminded_once_after_remind_after(db: Database, engine: Engine, clock: Clock) -> None:
    run_id = await waiting_run(engine, spec_with(DEADLINES))
    assert await check_deadlines(engine.db, now=clock.advance(hours=1, minutes=59)) == []
    assert await check_deadlines(engine.db, now=clock.advance(minutes=1)) == [f"reminded {run_id}/draft"]
    assert await check_deadlines(engine.db, now=clock.advance(minutes=30)) == []
    reminders = [p for k, p in await announcements(engine, run_id) if k == "checkpoint_reminder"]
    assert reminders == [{"step": "draft", "mention": ["U0ALICE"], "waiting_s": 7200.0, "timeout_s": 14400.0}]
    async with db.sessions() as session:
        step = await run_queries.get_step_run(session=session, run_id=run_id, step="draft")
    assert step.reminded_at == clock.now.replace(minute=0) and step.escalated_at is None


async def test_at_the_timeout_the_run_is_escalated_and_ends_expired_not_rejected(db: Database, engine: Engine, clock: Clock) -> None:
    run_id = await waiting_run(engine, spec_with(DEADLINES))
    await check_deadlines(engine.db, now=clock.advance(hours=2))
    done = await check_deadlines(engine.db, now=clock.advance(hours=2))
    assert done == [f"escalated {run_id}/draft (reject)", f"expired {run_id}/draft"]
    assert await engine.status(run_id) == "expired"
    assert await check_deadlines(engine.db, now=clock.advance(hours=1)) == []
    kinds = await announcements(engine, run_id)
    assert [k for k, _ in kinds][-4:] == ["checkpoint_reminder", "checkpoint_escalated", "checkpoint_decided", "run_finished"]
    escalation = dict(kinds)["checkpoint_escalated"]
    assert escalation["mention"] == ["U0BOB", "S0ONCALL"] and escalation["on_timeout"] == "reject"
    assert dict(kinds)["run_finished"]["status"] == "expired"
    async with db.sessions() as session:
        [decision] = await run_queries.decisions(session=session, run_id=run_id)
    assert (decision.action, decision.decided_by, decision.wait_s) == ("expire", "deadline", 4 * 3600.0)
    digest = await compute_digest(db, now=clock.now)
    [flow] = digest.workflows
    assert (flow.expired, flow.rejected, flow.checkpoint_expired, flow.escalations_held) == (1, 0, 1, 0)


async def test_with_hold_the_escalation_is_recorded_and_the_checkpoint_keeps_waiting(db: Database, engine: Engine, clock: Clock) -> None:
    run_id = await waiting_run(engine, spec_with({**DEADLINES, "on_timeout": "hold"}))
    done = await check_deadlines(engine.db, now=clock.advance(hours=5))
    assert done == [f"escalated {run_id}/draft (hold)"]  # the overdue reminder is folded into the escalation
    assert await check_deadlines(engine.db, now=clock.advance(hours=5)) == []
    assert await engine.status(run_id) == "awaiting_approval"
    kinds = [k for k, _ in await announcements(engine, run_id)]
    assert kinds.count("checkpoint_escalated") == 1 and "checkpoint_reminder" not in kinds
    digest = await compute_digest(db, now=clock.now)
    [flow] = digest.workflows
    assert (flow.escalations_held, flow.waiting, flow.checkpoint_expired) == (1, 1, 0)
    outcome = await engine.decide(run_id, "draft", action="approve", by="U0BOB")
    assert outcome.run_status == "queued"


async def test_a_plain_checkpoint_has_no_deadlines(engine: Engine, clock: Clock) -> None:
    run_id = await waiting_run(engine, spec_with(True))
    assert await check_deadlines(engine.db, now=clock.advance(days=30)) == []
    assert await engine.status(run_id) == "awaiting_approval"


async def test_a_decided_checkpoint_is_left_alone(engine: Engine, clock: Clock) -> None:
    run_id = await waiting_run(engine, spec_with(DEADLINES))
    await engine.decide(run_id, "draft", action="reject", by="U0ALICE")
    assert await check_deadlines(engine.db, now=clock.advance(hours=5)) == []
    assert await engine.status(run_id) == "rejected"


async def test_two_checkers_at_once_remind_once_and_expire_once(two_databases: tuple[Database, Database], clock: Clock) -> None:
    first, second = two_databases
    a, b = clocked_engine(first, clock, "replica-a"), clocked_engine(second, clock, "replica-b")
    runs = [await waiting_run(a, spec_with(DEADLINES)) for _ in range(3)]
    now = clock.advance(hours=2)
    done = await asyncio.gather(*(check_deadlines(e.db, now=now) for e in (a, b, a, b)))
    assert sorted(x for d in done for x in d) == sorted(f"reminded {r}/draft" for r in runs)
    now = clock.advance(hours=2)
    done = await asyncio.gather(*(check_deadlines(e.db, now=now) for e in (a, b, a, b)))
    flat = [x for d in done for x in d]
    assert sorted(x for x in flat if x.startswith("expired")) == sorted(f"expired {r}/draft" for r in runs)
    assert len([x for x in flat if x.startswith("escalated")]) == 3
    for run_id in runs:
        kinds = [k for k, _ in await announcements(a, run_id)]
        assert kinds.count("checkpoint_reminder") == 1
        assert kinds.count("checkpoint_escalated") == 1
        assert kinds.count("run_finished") == 1


async def due_at(db: Database, run_id: str):  # type: ignore[no-untyped-def]
    async with db.sessions() as session:
        return (await run_queries.get_step_run(session=session, run_id=run_id, step="draft")).due_at


async def test_each_check_dates_the_next_deadline_so_a_scan_reads_only_what_is_due(db: Database, engine: Engine, clock: Clock) -> None:
    """due_at: the reminder, then the timeout; after a held escalation (or without deadlines) never."""
    posted = clock.now
    run_id = await waiting_run(engine, spec_with(DEADLINES))
    held = await waiting_run(engine, spec_with({**DEADLINES, "on_timeout": "hold"}))
    plain = await waiting_run(engine, spec_with(True))
    assert await due_at(db, run_id) is None  # not dated until a check sees it
    await check_deadlines(engine.db, now=clock.advance(minutes=1))
    assert await due_at(db, run_id) == await due_at(db, held) == posted + timedelta(hours=2)
    assert await due_at(db, plain) == NEVER
    await check_deadlines(engine.db, now=clock.advance(hours=2))
    assert await due_at(db, run_id) == posted + timedelta(hours=4)
    await check_deadlines(engine.db, now=clock.advance(hours=2))
    assert await due_at(db, held) == NEVER
    assert await engine.status(run_id) == "expired"


async def test_a_check_with_many_waiting_handles_the_due_ones_in_batches(
    db: Database, engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deadlines, "BATCH", 2)
    runs = [await waiting_run(engine, spec_with(DEADLINES)) for _ in range(5)]
    done = await check_deadlines(engine.db, now=clock.advance(hours=2))
    assert done == [f"reminded {runs[0]}/draft", f"reminded {runs[1]}/draft"]  # all dated, the first BATCH due handled
    done = await check_deadlines(engine.db, now=clock.advance(seconds=30))
    done += await check_deadlines(engine.db, now=clock.advance(seconds=30))
    assert sorted(done) == sorted(f"reminded {r}/draft" for r in runs[2:])
