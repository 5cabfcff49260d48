"""A recorded run to show (a retried model step, an edited checkpoint, hostile text) and page links to it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.pages.links import Links
from storage.db import Database
from storage.models import Attempt, Decision, Run, StepRun, utcnow
from storage.status import AttemptStatus, RunStatus, StepStatus

KEY = "test-page-key-0123456789abcdef"
RUN_ID = "r0pages0000000000000000000000001"
XSS = "<script>alert('owned')</script><img src=x onerror=alert(1)>"


@pytest.fixture
def links() -> Links:
    return Links(KEY, public_url="https://overseer.example.com")


@pytest.fixture
async def recorded_run(db: Database) -> str:
    """A finished run of `writer`: draft failed once then succeeded, a human edited it; `publish` echoed hostile text."""
    start = utcnow() - timedelta(minutes=5)
    async with db.sessions.begin() as session:
        session.add(Run(id=RUN_ID, workflow="writer", inputs={"topic": "owls"}, started_by="U0ALICE", trigger="slack",
                        status=RunStatus.SUCCEEDED, created_at=start, started_at=start,
                        finished_at=start + timedelta(seconds=42), tokens_in=1200, tokens_out=345, cost_usd=0.0123))
        await session.flush()
        draft = StepRun(run_id=RUN_ID, step="draft", position=0, status=StepStatus.EDITED, input={"topic": "owls"},
                        output="Owls hunt at night.\nThey are quiet flyers.", attempts=2, cost_usd=0.01,
                        started_at=start, finished_at=start + timedelta(seconds=30))
        publish = StepRun(run_id=RUN_ID, step="publish", position=1, status=StepStatus.SUCCEEDED,
                          input={"text": XSS}, output=XSS, attempts=1, started_at=start + timedelta(seconds=31),
                          finished_at=start + timedelta(seconds=42))
        session.add_all([draft, publish])
        await session.flush()
        session.add_all([
            Attempt(run_id=RUN_ID, step="draft", number=1, model="openai/gpt-4o-mini", status=AttemptStatus.FAILED,
                    input=[{"role": "user", "content": "Write about owls"}], raw_output="{not json",
                    error_type="OutputInvalid", error_message="the output is not JSON", tokens_in=600, tokens_out=20,
                    cost_usd=0.004, latency_ms=850.0, backoff_s=2.0, started_at=start),
            Attempt(run_id=RUN_ID, step="draft", number=2, model="openai/gpt-4o-mini", model_used="gpt-4o-mini-2024-07-18",
                    status=AttemptStatus.SUCCEEDED, input=[{"role": "user", "content": "Write about owls"}],
                    raw_output="Owls hunt at night.\nThey are silent.", parsed_output="Owls hunt at night.\nThey are silent.",
                    tokens_in=600, tokens_out=325, cost_usd=0.006, latency_ms=1234.0, started_at=start + timedelta(seconds=3)),
            Attempt(run_id=RUN_ID, step="publish", number=1, model="echo", status=AttemptStatus.SUCCEEDED,
                    input={"text": XSS}, raw_output=XSS, parsed_output=XSS, started_at=start + timedelta(seconds=31)),
            Decision(step_run_id=draft.id, run_id=RUN_ID, step="draft", action="edit", decided_by="U0BOSS",
                     decided_at=start + timedelta(seconds=29), original_output="Owls hunt at night.\nThey are silent.",
                     edited_output="Owls hunt at night.\nThey are quiet flyers.", reason="warmer tone",
                     chars_changed=12, chars_total=40, wait_s=20.0),
        ])
    return RUN_ID
