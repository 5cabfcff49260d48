"""The digest's numbers, checked against a small history whose every figure is worked out by hand."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update

from agents.digest import Digest, compute_digest, percentile
from storage.models import Attempt, Decision, Event, OutboxMessage, Run, StepRun

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)
START = NOW - timedelta(days=1)  # the window is [2026-03-09 09:00, 2026-03-10 09:00)


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=timezone.utc)


class History:
    """Builds runs with their steps, attempts and decisions; ids are r1, r2, ..."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.step_id = 0

    def run(
        self, rid: str, status: str, created: datetime, finished: datetime | None = None, *,
        workflow: str = "alpha", started: datetime | None = None,
    ) -> str:
        started = started or created
        self.rows.append(Run(
            id=rid, workflow=workflow, inputs={}, spec={}, started_by="test", trigger="cli", status=status,
            created_at=created, started_at=started if status != "queued" else None, finished_at=finished,
            updated_at=finished or created,
        ))
        return rid

    def step(self, rid: str, name: str, status: str, attempts: int = 1, position: int = 0) -> int:
        self.step_id += 1
        self.rows.append(StepRun(id=self.step_id, run_id=rid, step=name, position=position, status=status, attempts=attempts))
        return self.step_id

    def attempt(self, rid: str, step: str, number: int, when: datetime, cost: float, error: str | None = None) -> None:
        self.rows.append(Attempt(run_id=rid, step=step, number=number, started_at=when, cost_usd=cost, error_type=error))

    def decision(self, rid: str, step_id: int, action: str, when: datetime, wait_s: float, changed: int = 0, total: int = 0,
                 by: str = "U0ALICE", reason: str | None = None) -> None:
        self.rows.append(Decision(
            step_run_id=step_id, run_id=rid, step="draft", action=action, decided_by=by, decided_at=when,
            chars_changed=changed, chars_total=total, wait_s=wait_s, reason=reason,
        ))

    def finished(self, rid: str, status: str, when: datetime) -> None:
        """The run-finished announcement the engine writes at each finish (a retried run finishes again)."""
        self.rows.append(OutboxMessage(run_id=rid, stream=f"run:{rid}", kind="run_finished", payload={"status": status},
                                       created_at=when))


def history() -> list[Any]:
    h = History()
    # r1: succeeded in 100 s; a retried draft approved as is after 60 s.
    h.run("r1", "succeeded", at(9, 10), at(9, 10, 1, 40))
    h.step("r1", "fetch", "succeeded")
    h.attempt("r1", "fetch", 1, at(9, 10, 0, 10), 0.10)
    s = h.step("r1", "draft", "approved", attempts=2, position=1)
    h.attempt("r1", "draft", 1, at(9, 10, 0, 20), 0.05, "TransientError")
    h.attempt("r1", "draft", 2, at(9, 10, 0, 30), 0.15)
    h.decision("r1", s, "approve", at(9, 10, 1, 30), 60, changed=0, total=100)
    # r2: succeeded in 300 s; the draft edited (30 of 200 characters) after 120 s.
    h.run("r2", "succeeded", at(9, 11), at(9, 11, 5))
    h.step("r2", "fetch", "succeeded")
    h.attempt("r2", "fetch", 1, at(9, 11, 0, 10), 0.10)
    s = h.step("r2", "draft", "edited", position=1)
    h.attempt("r2", "draft", 1, at(9, 11, 0, 20), 0.10)
    h.decision("r2", s, "edit", at(9, 11, 4), 120, changed=30, total=200)
    # r3: failed after 50 s: the draft's three transient attempts ran out (an exhaustion).
    h.run("r3", "failed", at(9, 12), at(9, 12, 0, 50))
    h.step("r3", "fetch", "succeeded")
    h.attempt("r3", "fetch", 1, at(9, 12, 0, 5), 0.02)
    h.step("r3", "draft", "failed", attempts=3, position=1)
    h.attempt("r3", "draft", 1, at(9, 12, 0, 10), 0.01, "TransientError")
    h.attempt("r3", "draft", 2, at(9, 12, 0, 20), 0.01, "CallTimeout")
    h.attempt("r3", "draft", 3, at(9, 12, 0, 30), 0.01, "RateLimited")
    # r4: failed after 600 s at fetch, one permanent error (not an exhaustion).
    h.run("r4", "failed", at(9, 13), at(9, 13, 10))
    h.step("r4", "fetch", "failed")
    h.attempt("r4", "fetch", 1, at(9, 13, 0, 5), 0.0, "PermanentError")
    h.step("r4", "draft", "pending", attempts=0, position=1)
    # r5: rejected at the checkpoint after 900 s; finished after 1200 s.
    h.run("r5", "rejected", at(9, 14), at(9, 14, 20))
    s = h.step("r5", "draft", "rejected")
    h.decision("r5", s, "reject", at(9, 14, 20), 900)
    # r6: expired by a deadline (4 h): not a human decision, so not in the median wait.
    h.run("r6", "expired", at(9, 15), at(9, 19))
    s = h.step("r6", "draft", "expired")
    h.decision("r6", s, "expire", at(9, 19), 14400)
    # r7: still waiting, escalated and held.
    h.run("r7", "awaiting_approval", at(9, 16))
    h.step("r7", "draft", "awaiting_approval")
    h.rows.append(Event(run_id="r7", kind="checkpoint_escalated", actor="deadline", detail={}, at=at(9, 20)))
    h.rows.append(Event(run_id="r7", kind="checkpoint_escalated", actor="deadline", detail={}, at=at(8, 20)))  # before
    h.rows.append(Event(run_id="r7", kind="refused_click", actor="U0X", detail={}, at=at(9, 21)))  # another kind
    # r8: cancelled after 1800 s: counted, but not in the success rate.
    h.run("r8", "cancelled", at(9, 17), at(9, 17, 30))
    # r9: created before the window, finished exactly at its start (in): 13 h; its attempt was before (out).
    h.run("r9", "succeeded", at(8, 20), at(9, 9))
    h.attempt("r9", "fetch", 1, at(9, 8), 1.00)
    # r10: created exactly at the window's end (out), with an attempt exactly then (out).
    h.run("r10", "queued", NOW)
    h.attempt("r10", "fetch", 1, NOW, 5.00)
    # The 7 days before: 2 of 3 succeeded (r13 finished one second before the window).
    h.run("r11", "succeeded", at(5, 11), at(5, 12))
    h.run("r12", "failed", at(3, 11), at(3, 12))
    h.run("r13", "succeeded", at(9, 8), at(9, 8, 59, 59))
    # Older than 14 days: nowhere.
    h.run("r14", "succeeded", at(1, 1) - timedelta(days=5), at(1, 2) - timedelta(days=5))
    # beta: one quick success, no attempts; a decision exactly at the window's end (out).
    h.run("b1", "succeeded", at(9, 9, 30), at(9, 9, 31), workflow="beta")
    s = h.step("b1", "draft", "approved")
    h.decision("b1", s, "approve", NOW, 5, total=10)
    return h.rows


def alone_history() -> list[Any]:
    """Outages, retries, reasons and approvers, for how far the agents get alone."""
    h = History()
    for rid, status in [("m0", "failed"), ("m1", "succeeded"), ("m2", "failed"), ("m3", "succeeded"),
                        ("m4", "succeeded"), ("m5", "failed"), ("m6", "cancelled")]:
        h.run(rid, status, at(1, 1), at(9, 20))
    h.finished("m0", "failed", at(9, 8))  # before the window: opens nothing
    h.finished("m1", "failed", at(9, 10))  # an outage opens
    h.finished("m2", "failed", at(9, 10, 30))  # the same outage; m2 never recovers itself
    h.finished("m6", "cancelled", at(9, 10, 45))  # neither a failure nor a recovery
    h.finished("m3", "succeeded", at(9, 11))  # the outage closes: 3600 s
    h.finished("m1", "succeeded", at(9, 12))  # m1 retried: 10:00 -> 12:00 = 7200 s
    h.finished("m4", "failed", at(9, 13))  # a second outage opens
    h.finished("m4", "failed", at(9, 13, 20))  # retried, failed again
    h.finished("m4", "succeeded", at(9, 14))  # outage 3600 s; m4 retried from its first failure: 3600 s
    h.finished("m5", "failed", at(9, 20))  # still open at NOW: left out
    h.attempt("m1", "draft", 1, at(9, 10), 0.30)
    decisions = [
        ("reject", "U0ALICE", 100, "Wrong tone.", at(9, 15)), ("reject", "U0BOB", 300, "  wrong   TONE ", at(9, 15)),
        ("reject", "U0BOB", 500, "Too long", at(9, 15)), ("reject", "U0ALICE", 200, "too long!", at(9, 15)),
        ("reject", "U0BOB", 50, "Off topic", at(9, 15)), ("reject", "U0ALICE", 10, None, at(9, 15)),
        ("reject", "U0ALICE", 30, "Missing price.", at(9, 15)), ("approve", "U0ALICE", 40, None, at(9, 15)),
        ("edit", "U0BOB", 70, None, at(9, 15)), ("expire", "deadline", 14400, None, at(9, 15)),
        ("approve", "U0CAROL", 9999, None, at(1, 15)),  # 8 days back: only in the 14-day share
        ("edit", "U0BOB", 60, None, at(1, 15) - timedelta(days=10)),  # 18 days back: nowhere
    ]
    for i, (action, by, wait, reason, when) in enumerate(decisions):
        step = h.step("m3", f"c{i}", action, position=i)
        h.decision("m3", step, action, when, wait, by=by, reason=reason)
    return h.rows


async def _fill(db, rows):  # type: ignore[no-untyped-def]
    async with db.sessions.begin() as session:
        session.add_all([r for r in rows if isinstance(r, Run)])
        await session.flush()
        session.add_all([r for r in rows if isinstance(r, StepRun)])
        await session.flush()
        session.add_all([r for r in rows if not isinstance(r, (Run, StepRun))])
    return db


@pytest.fixture
async def filled(db):  # type: ignore[no-untyped-def]
    return await _fill(db, history())


async def test_how_far_the_agents_get_alone_matches_the_hand_computed_history(db) -> None:  # type: ignore[no-untyped-def]
    await _fill(db, alone_history())
    (alpha,) = (await compute_digest(db, now=NOW)).workflows
    assert alpha.mttr_run_s == pytest.approx((3600 + 3600) / 2)  # 10:00 -> 11:00 and 13:00 -> 14:00
    assert alpha.mttr_retry_s == pytest.approx((7200 + 3600) / 2)  # m1 and m4 succeeded after a retry
    assert alpha.cost_per_approved_usd == pytest.approx(0.30 / 2)  # one approved, one edited in the window
    assert [(r.reason, r.count) for r in alpha.top_reject_reasons] == [("too long", 2), ("wrong tone", 2), ("missing price", 1)]
    # U0ALICE: 10 30 40 100 200 -> 40; U0BOB: 50 70 300 500 -> 185; the deadline and U0CAROL (out) are not listed.
    assert [(a.approver, a.median_s, a.decisions) for a in alpha.median_decision_by_approver] == [
        ("U0ALICE", 40, 5), ("U0BOB", 185, 4)]
    assert alpha.untouched_share_14d == pytest.approx(2 / 10)  # approved as is: one today, U0CAROL's 8 days back
    totals = (await compute_digest(db, now=NOW)).totals
    assert (totals.mttr_run_s, totals.mttr_retry_s, totals.untouched_share_14d) == (
        alpha.mttr_run_s, alpha.mttr_retry_s, alpha.untouched_share_14d)


async def test_the_first_history_gives_its_own_alone_figures(filled) -> None:  # type: ignore[no-untyped-def]
    alpha = (await compute_digest(filled, now=NOW)).workflows[0]
    assert alpha.mttr_run_s is None and alpha.mttr_retry_s is None  # no finish was announced
    assert alpha.cost_per_approved_usd == pytest.approx(0.55 / 2)  # r1 approved, r2 edited
    assert alpha.top_reject_reasons == []  # r5 was rejected without a reason
    assert [(a.approver, a.median_s, a.decisions) for a in alpha.median_decision_by_approver] == [("U0ALICE", 120, 3)]
    assert alpha.untouched_share_14d == pytest.approx(1 / 3)  # r1 of r1 r2 r5 (r6 expired: not a person's)


async def test_every_number_matches_the_hand_computed_history(filled) -> None:  # type: ignore[no-untyped-def]
    digest = await compute_digest(filled, now=NOW, workflows=["alpha", "beta", "gamma"])
    assert (digest.window_start, digest.window_end, digest.days) == (START, NOW, 1)
    assert [w.workflow for w in digest.workflows] == ["alpha", "beta", "gamma"]
    alpha, beta, gamma = digest.workflows

    # runs: r1-r8 started in the window; r1 r2 r9 succeeded, r3 r4 failed, r5 rejected, r6 expired, r8 cancelled.
    assert (alpha.started, alpha.succeeded, alpha.failed, alpha.rejected, alpha.expired, alpha.cancelled, alpha.waiting) == (
        8, 3, 2, 1, 1, 1, 1)
    assert alpha.success_rate == pytest.approx(3 / 7)
    assert alpha.success_rate_previous == pytest.approx(2 / 3)
    assert alpha.success_rate_change == pytest.approx(3 / 7 - 2 / 3)
    # failures: one draft (r3), one fetch (r4); ties by name.
    assert [(s.step, s.count) for s in alpha.top_failed_steps] == [("draft", 1), ("fetch", 1)]
    # attempts in the window: r1 3, r2 2, r3 4, r4 1; retries = r1 draft#2, r3 draft#2 and #3.
    assert (alpha.attempts, alpha.retries, alpha.retry_exhaustions) == (10, 3, 1)
    # checkpoints: r1 approved, r2 edited, r5 rejected, r6 expired; r7's escalation held.
    assert (alpha.approved, alpha.edited, alpha.checkpoint_rejected, alpha.checkpoint_expired, alpha.escalations_held) == (
        1, 1, 1, 1, 1)
    assert alpha.edit_rate == pytest.approx((0 + 30) / (100 + 200))
    assert alpha.median_decision_s == 120  # of 60, 120, 900 (the expiry's 14400 is not a decision by a person)
    # cost: 0.30 + 0.20 + 0.05 + 0.0 in the window; three successes.
    assert alpha.cost_usd == pytest.approx(0.55)
    assert alpha.cost_per_success_usd == pytest.approx(0.55 / 3)
    # durations of r3 r1 r2 r4 r5 r8 r6 r9: 50 100 300 600 1200 1800 14400 46800.
    assert alpha.duration_p50_s == pytest.approx(900)  # between 600 and 1200
    assert alpha.duration_p95_s == pytest.approx(14400 + 0.65 * (46800 - 14400))
    # the last 14 days, oldest first: r12 (6 days back) failed, r11 (4 days) and r13 (1 day) succeeded.
    series: list[float | None] = [None] * 14
    series[13] = 3 / 7
    series[12] = 1.0
    series[9] = 1.0
    series[7] = 0.0
    assert alpha.daily_success_rate == pytest.approx(series)

    assert (beta.started, beta.succeeded, beta.success_rate, beta.attempts, beta.approved) == (1, 1, 1.0, 0, 0)
    assert beta.success_rate_change is None and beta.cost_per_success_usd == 0.0
    assert beta.duration_p50_s == beta.duration_p95_s == 60
    assert (gamma.started, gamma.success_rate, gamma.duration_p50_s, gamma.daily_success_rate) == (0, None, None, [None] * 14)

    t = digest.totals
    assert (t.started, t.succeeded, t.failed, t.waiting, t.attempts) == (9, 4, 2, 1, 10)
    assert t.success_rate == pytest.approx(4 / 8)
    assert t.duration_p50_s == pytest.approx(600)  # nine values: 50 60 100 300 [600] 1200 1800 14400 46800


def uncounted_history() -> list[Any]:
    """Profile and eval runs of alpha doing everything the digest counts, in the window and the 14 days."""
    h = History()
    h.step_id = 1000  # next to history()'s steps
    for i, trigger in enumerate(("profile", "eval")):
        rid = h.run(f"p{i}", "failed", at(9, 10), at(9, 11))
        h.rows[-1].trigger = trigger
        s = h.step(rid, "draft", "failed", attempts=2)
        h.attempt(rid, "draft", 1, at(9, 10, 1), 0.50, "TransientError")
        h.attempt(rid, "draft", 2, at(9, 10, 2), 0.50, "TransientError")
        h.decision(rid, s, "reject", at(9, 10, 30), 30, reason="profiled")
        h.finished(rid, "failed", at(9, 11))
        old = h.run(f"q{i}", "succeeded", at(4, 10), at(4, 11))
        h.rows[-1].trigger = trigger
        h.decision(old, h.step(old, "draft", "approved"), "approve", at(4, 10, 30), 30)
        h.rows.append(Event(run_id=rid, kind="checkpoint_escalated", actor="deadline", detail={}, at=at(9, 20)))
        h.run(f"w{i}", "awaiting_approval", at(9, 16))
        h.rows[-1].trigger = trigger
    return h.rows


async def test_profile_and_eval_runs_are_left_out_of_every_figure(db) -> None:  # type: ignore[no-untyped-def]
    await _fill(db, history())
    before = await compute_digest(db, now=NOW)
    await _fill(db, uncounted_history())
    assert await compute_digest(db, now=NOW) == before
    assert await compute_digest(db, now=NOW, days=7) != before  # (the fill did reach the database)


async def test_attempts_and_decisions_that_carry_their_workflow_count_the_same(db) -> None:  # type: ignore[no-untyped-def]
    """The workflow copied onto attempts and decisions at insert gives the figures its lookup gives."""
    rows = history()
    runs = {r.id: r.workflow for r in rows if isinstance(r, Run)}
    for row in rows:
        if isinstance(row, (Attempt, Decision)):
            row.workflow = runs[row.run_id]
    await _fill(db, rows)
    copied = await compute_digest(db, now=NOW)
    async with db.sessions.begin() as session:
        await session.execute(update(Attempt).values(workflow=None))
        await session.execute(update(Decision).values(workflow=None))
    assert await compute_digest(db, now=NOW) == copied
    assert (copied.workflows[0].attempts, copied.workflows[0].approved) == (10, 1)


async def test_a_longer_window_compares_with_the_seven_days_before_it(filled) -> None:  # type: ignore[no-untyped-def]
    digest = await compute_digest(filled, now=NOW, days=7)
    alpha = next(w for w in digest.workflows if w.workflow == "alpha")
    # [03-03 09:00, 03-10 09:00): started r1-r9, r11, r12, r13; succeeded r1 r2 r9 r11 r13; failed r3 r4 r12.
    assert (alpha.started, alpha.succeeded, alpha.failed, alpha.rejected, alpha.expired) == (12, 5, 3, 1, 1)
    assert alpha.success_rate == pytest.approx(5 / 10)
    assert alpha.success_rate_previous is None  # nothing finished in [02-24, 03-03) but r14 (earlier still)


async def test_the_payload_is_json_and_round_trips(filled) -> None:  # type: ignore[no-untyped-def]
    digest = await compute_digest(filled, now=NOW)
    payload = json.loads(json.dumps(digest.to_payload()))
    again = Digest.from_payload(payload)
    assert again == digest
    assert again.to_payload() == payload


async def test_an_empty_database_gives_an_empty_digest(db) -> None:  # type: ignore[no-untyped-def]
    digest = await compute_digest(db, now=NOW)
    assert digest.workflows == [] and digest.totals.started == 0 and digest.totals.success_rate is None


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)


async def test_days_out_of_range_are_refused(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="days"):
        await compute_digest(db, now=NOW, days=0)
