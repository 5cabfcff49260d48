"""The digest counts revisions per checkpoint, against a small hand-computed history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from agents.digest import compute_digest
from bot.digest import digest_message, digest_text
from storage.models import CheckpointVersion, Decision, Run, StepRun

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)
IN = NOW - timedelta(hours=3)  # inside the window [NOW - 1 day, NOW)
BEFORE = NOW - timedelta(days=1, hours=1)  # outside it


def _history() -> list[Any]:
    rows: list[Any] = []
    for i, (rid, workflow, step) in enumerate([("r1", "alpha", "draft"), ("r2", "alpha", "summary"), ("r3", "beta", "draft")], 1):
        rows.append(Run(id=rid, workflow=workflow, inputs={}, spec={}, started_by="t", trigger="cli", status="succeeded",
                        created_at=IN, updated_at=IN))
        rows.append(StepRun(id=i, run_id=rid, step=step, position=0, status="approved", attempts=1))

    def version(step_id: int, rid: str, step: str, number: int, outcome: str, when: datetime) -> None:
        rows.append(CheckpointVersion(step_run_id=step_id, run_id=rid, step=step, version=number, outcome=outcome, at=when,
                                      first_attempt=number, last_attempt=number, note="again" if outcome == "revised" else None))

    version(1, "r1", "draft", 1, "revised", BEFORE)  # before the window: not counted
    version(1, "r1", "draft", 2, "revised", IN)
    version(1, "r1", "draft", 3, "revised", IN)
    version(1, "r1", "draft", 4, "approve", IN)  # a decided version is not a revision
    version(2, "r2", "summary", 1, "revised", IN)
    version(3, "r3", "draft", 1, "revised", IN)
    for step_id, rid, action in [(1, "r1", "approve"), (2, "r2", "edit"), (3, "r3", "reject")]:
        rows.append(Decision(step_run_id=step_id, run_id=rid, step="x", action=action, decided_by="U0A", decided_at=IN,
                             chars_changed=0, chars_total=1, wait_s=1.0))
    return rows


async def test_revisions_are_counted_per_checkpoint_and_per_decision(db) -> None:  # type: ignore[no-untyped-def]
    async with db.sessions.begin() as session:
        for row in _history():
            session.add(row)
            await session.flush()
    digest = await compute_digest(db, now=NOW)
    alpha, beta = digest.workflows
    assert (alpha.revisions, alpha.revision_rate) == (3, 1.5)  # 3 revisions, 2 decisions
    assert [(s.step, s.count) for s in alpha.revisions_by_checkpoint] == [("draft", 2), ("summary", 1)]
    assert (beta.revisions, beta.revision_rate, [(s.step, s.count) for s in beta.revisions_by_checkpoint]) == (1, 1.0, [("draft", 1)])
    totals = digest.totals
    assert totals.revisions == 4 and totals.revision_rate == 4 / 3
    assert [(s.step, s.count) for s in totals.revisions_by_checkpoint] == [("alpha/draft", 2), ("alpha/summary", 1), ("beta/draft", 1)]

    payload = digest.to_payload()
    text = digest_text(payload)
    assert "3 revised" in text and "3 (150% of decisions) · draft ×2, summary ×1" in text
    assert "*Revisions*: 3 (150% of decisions) · draft ×2, summary ×1" in str(digest_message(payload)[1])
