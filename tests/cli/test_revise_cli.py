"""`overseer run` at a checkpoint: revise with a note from the terminal, then approve the new version."""

from __future__ import annotations

import asyncio
from pathlib import Path

from storage.db import Database
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.processes import overseer_env, spawn_overseer
from tests.helpers.runs import attempts_of, only_run

WRITER = """
name: writer
approvers: [U0BOSS]
steps:
  - name: draft
    model: openai/gpt-4o-mini
    prompt: Write a title about owls
    checkpoint: {max_revisions: 2}
"""


async def test_revise_at_the_prompt_reruns_the_step_with_the_note_and_the_new_version_is_asked_about(
    db: Database, db_url: str, fake_model: FakeModel, tmp_path: Path
) -> None:
    (tmp_path / "writer.yaml").write_text(WRITER)
    fake_model.script(Reply.text("Owls"), Reply.text("Barn owls at dusk"))
    env = overseer_env(DATABASE_URL=db_url, OVERSEER_WORKFLOWS=str(tmp_path), OPENAI_BASE_URL=fake_model.api_base,
                       OPENAI_API_KEY="sk-fake", OVERSEER_RETRY_DELAY_SCALE="0.001", OVERSEER_LEASE_SECONDS="1")
    proc = await spawn_overseer(env, "run", "writer", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(b"v\nName the species\na\n"), 60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "revising: v2 follows (1 revision(s) left)" in text and "Barn owls at dusk" in text
    assert "↻ draft v1 sent back by cli:" in text
    run = await only_run(db)
    assert run.status == "succeeded"
    second = fake_model.requests[1].body["messages"]
    assert second[-2] == {"role": "assistant", "content": "Owls"} and "Name the species" in second[-1]["content"]
    assert [a.number for a in await attempts_of(db, run.id)] == [1, 2]
