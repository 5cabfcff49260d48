"""The review loop in the engine: revise with a note, versions, N-of-M approvals and self-approval, exactly once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agents.engine import Engine
from agents.errors import AlreadyDecided, InvalidState, NotAllowed, StaleVersion
from agents.spec import WorkflowSpec
from storage import checkpoint_queries as cq
from storage import run_queries
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.runs import attempts_of, outbox_kinds
from tests.helpers.specs import model_spec

APPROVERS = ["U0ANN", "U0BEA", "U0CID"]


def reviewed(fake_model: FakeModel, **checkpoint: Any) -> WorkflowSpec:
    """A JSON draft at a checkpoint (with `checkpoint` settings), then a step that uses its title."""
    return model_spec(fake_model, approvers=APPROVERS, steps=[
        {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "Write a title", "checkpoint": checkpoint or True,
         "output": {"format": "json", "schema": {"type": "object", "required": ["title"]}}},
        {"name": "polish", "model": "openai/gpt-4o-mini", "prompt": "Polish {{ steps.draft.output.title }}"},
    ])


async def waiting_run(engine: Engine, spec: WorkflowSpec, started_by: str = "U0STARTER") -> str:
    run_id = await engine.start(spec, {}, started_by=started_by)
    assert await engine.advance(run_id) == "awaiting_approval"
    return run_id


async def test_revise_runs_the_step_again_with_its_output_and_the_note_and_records_each_version(
    engine: Engine, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.json({"title": "Barn owls"}), Reply.json({"title": "Barn owls at dusk"}),
                      Reply.text("polished"))
    run_id = await waiting_run(engine, reviewed(fake_model))

    first = await engine.revise(run_id, "draft", by="U0ANN", note="Name the species", version=1)
    assert first.version == 2 and first.revisions_left == 2
    assert await engine.advance(run_id) == "awaiting_approval"
    messages = fake_model.requests[1].body["messages"]
    assert messages[-3]["content"] == "Write a title"
    assert messages[-2]["role"] == "assistant" and json.loads(messages[-2]["content"]) == {"title": "Owls"}
    assert messages[-1]["role"] == "user" and "Name the species" in messages[-1]["content"]

    await engine.revise(run_id, "draft", by="U0BEA", note="Say when", version=2)
    assert await engine.advance(run_id) == "awaiting_approval"
    third = fake_model.requests[2].body["messages"]
    # every round so far, in order: the model sees its earlier answers and each note on them
    assert [m["role"] for m in third[-4:]] == ["assistant", "user", "assistant", "user"]
    assert "Name the species" in third[-3]["content"] and "Say when" in third[-1]["content"]
    assert json.loads(third[-2]["content"]) == {"title": "Barn owls"}

    outcome = await engine.decide(run_id, "draft", action="approve", by="U0CID", version=3)
    assert outcome.version == 3
    assert await engine.advance(run_id) == "succeeded"
    assert fake_model.requests[-1].body["messages"][-1]["content"] == "Polish Barn owls at dusk"

    async with engine.db.sessions() as session:
        versions = list(await cq.versions(session=session, run_id=run_id, step="draft"))
        step_run = await run_queries.get_step_run(session=session, run_id=run_id, step="draft")
    assert [(v.version, v.outcome, v.by, v.note) for v in versions] == [
        (1, "revised", "U0ANN", "Name the species"), (2, "revised", "U0BEA", "Say when"), (3, "approve", "U0CID", None),
    ]
    assert [v.output for v in versions] == [{"title": "Owls"}, {"title": "Barn owls"}, {"title": "Barn owls at dusk"}]
    assert [(v.first_attempt, v.last_attempt) for v in versions] == [(1, 1), (2, 2), (3, 3)]  # each version's attempts
    assert step_run.version == 3 and step_run.revisions == 2
    assert [a.number for a in await attempts_of(engine, run_id, "draft")] == [1, 2, 3]
    assert (await outbox_kinds(engine, run_id)).count("checkpoint_revising") == 2


async def test_a_revision_gets_a_fresh_attempt_budget_and_its_retries_count_for_its_version(
    engine: Engine, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("not json"), Reply.json({"title": "Barn owls"}))
    run_id = await waiting_run(engine, reviewed(fake_model))
    await engine.revise(run_id, "draft", by="U0ANN", note="Name the species")
    assert await engine.advance(run_id) == "awaiting_approval"
    await engine.decide(run_id, "draft", action="reject", by="U0ANN", reason="still no")
    async with engine.db.sessions() as session:
        versions = list(await cq.versions(session=session, run_id=run_id))
    assert [(v.version, v.first_attempt, v.last_attempt) for v in versions] == [(1, 1, 1), (2, 2, 3)]


async def test_max_revisions_bounds_the_rounds(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.default = Reply.json({"title": "Owls"})
    run_id = await waiting_run(engine, reviewed(fake_model, max_revisions=1))
    await engine.revise(run_id, "draft", by="U0ANN", note="again")
    assert await engine.advance(run_id) == "awaiting_approval"
    with pytest.raises(InvalidState, match="no revisions left"):
        await engine.revise(run_id, "draft", by="U0ANN", note="once more")
    assert fake_model.count == 2 and await engine.status(run_id) == "awaiting_approval"


async def test_a_decision_on_an_older_version_is_refused_and_decides_nothing(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.json({"title": "Barn owls"}))
    run_id = await waiting_run(engine, reviewed(fake_model))
    await engine.revise(run_id, "draft", by="U0ANN", note="Name the species", version=1)
    with pytest.raises(StaleVersion, match="newer version"):  # while v2 is being made
        await engine.decide(run_id, "draft", action="approve", by="U0BEA", version=1)
    assert await engine.advance(run_id) == "awaiting_approval"
    for action in ("approve", "reject"):
        with pytest.raises(StaleVersion):
            await engine.decide(run_id, "draft", action=action, by="U0BEA", version=1, reason="x")
    with pytest.raises(StaleVersion):
        await engine.revise(run_id, "draft", by="U0BEA", note="x", version=1)
    async with engine.db.sessions() as session:
        assert list(await run_queries.decisions(session=session, run_id=run_id)) == []
    assert await engine.status(run_id) == "awaiting_approval"


async def test_racing_revisions_make_one_rerun(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.default = Reply.json({"title": "Owls"})
    run_id = await waiting_run(engine, reviewed(fake_model))
    results = await asyncio.gather(
        *(engine.revise(run_id, "draft", by=APPROVERS[i % 3], note=f"note {i}", version=1) for i in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(r, StaleVersion) for r in results if r not in winners)
    assert await engine.advance(run_id) == "awaiting_approval"
    assert fake_model.count == 2  # one re-run
    async with engine.db.sessions() as session:
        assert len(await cq.versions(session=session, run_id=run_id)) == 1


async def test_n_of_m_counts_each_approver_once_and_only_the_nth_moves_the_run(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("polished"))
    run_id = await waiting_run(engine, reviewed(fake_model, approvals=2))

    first = await engine.decide(run_id, "draft", action="approve", by="U0ANN", version=1)
    assert first.run_status == "awaiting_approval" and first.approvers == ("U0ANN",) and first.needed == 2
    with pytest.raises(InvalidState, match="already approved"):
        await engine.decide(run_id, "draft", action="approve", by="U0ANN", version=1)
    assert await engine.advance(run_id) == "awaiting_approval"  # not yet

    second = await engine.decide(run_id, "draft", action="approve", by="U0BEA", version=1)
    assert second.run_status == "queued" and second.approvers == ("U0ANN", "U0BEA")
    assert await engine.advance(run_id) == "succeeded"
    async with engine.db.sessions() as session:
        [decision] = await run_queries.decisions(session=session, run_id=run_id)
        approvers = await cq.approvers(session=session, step_run_id=decision.step_run_id, version=1)
    assert decision.decided_by == "U0BEA" and approvers == ["U0ANN", "U0BEA"]
    assert "checkpoint_approved" in await outbox_kinds(engine, run_id)


async def test_a_reject_by_any_approver_rejects_a_checkpoint_that_needs_several(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}))
    run_id = await waiting_run(engine, reviewed(fake_model, approvals=2))
    await engine.decide(run_id, "draft", action="approve", by="U0ANN")
    await engine.decide(run_id, "draft", action="reject", by="U0BEA", reason="no")
    assert await engine.status(run_id) == "rejected" and fake_model.count == 1


async def test_racing_approvals_count_each_approver_once_and_the_next_step_runs_once(
    engine: Engine, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("polished"))
    run_id = await waiting_run(engine, reviewed(fake_model, approvals=2))
    clicks = [APPROVERS[i % 3] for i in range(30)]  # each approver clicks ten times, all at once
    results = await asyncio.gather(
        *(engine.decide(run_id, "draft", action="approve", by=who, version=1) for who in clicks), return_exceptions=True,
    )
    counted = [r for r in results if not isinstance(r, Exception)]
    assert len(counted) == 2 and len({r.decided_by for r in counted}) == 2  # two distinct approvers counted, once each
    assert [r.run_status for r in counted].count("queued") == 1  # the second of them decided
    assert all(isinstance(r, (AlreadyDecided, InvalidState)) for r in results if r not in counted)
    assert await engine.advance(run_id) == "succeeded"
    assert fake_model.count == 2  # the step after the checkpoint ran once
    async with engine.db.sessions() as session:
        [decision] = await run_queries.decisions(session=session, run_id=run_id)
        assert len(await cq.approvers(session=session, step_run_id=decision.step_run_id, version=1)) == 2


async def test_without_self_approval_the_starter_may_reject_but_not_approve_or_edit(engine: Engine, fake_model: FakeModel) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("polished"))
    run_id = await waiting_run(engine, reviewed(fake_model, self_approval=False), started_by="U0ANN")
    with pytest.raises(NotAllowed, match="self_approval"):
        await engine.decide(run_id, "draft", action="approve", by="U0ANN")
    with pytest.raises(NotAllowed):
        await engine.decide(run_id, "draft", action="edit", by="U0ANN", edited='{"title": "Mine"}')
    await engine.decide(run_id, "draft", action="approve", by="U0BEA")
    assert await engine.advance(run_id) == "succeeded"


async def test_with_several_approvers_an_edit_is_the_next_version_approved_by_its_editor(
    engine: Engine, fake_model: FakeModel
) -> None:
    fake_model.script(Reply.json({"title": "Owls"}), Reply.text("polished"))
    run_id = await waiting_run(engine, reviewed(fake_model, approvals=2))
    await engine.decide(run_id, "draft", action="approve", by="U0CID", version=1)  # approved what v1 said
    edited = await engine.decide(run_id, "draft", action="edit", by="U0ANN", edited='{"title": "Barn owls"}', version=1)
    assert edited.version == 2 and edited.approvers == ("U0ANN",) and edited.run_status == "awaiting_approval"
    with pytest.raises(StaleVersion):
        await engine.decide(run_id, "draft", action="approve", by="U0BEA", version=1)
    await engine.decide(run_id, "draft", action="approve", by="U0BEA", version=2)
    assert await engine.advance(run_id) == "succeeded"
    assert fake_model.requests[-1].body["messages"][-1]["content"] == "Polish Barn owls"


def test_the_checkpoint_keys_default_and_approvals_cannot_exceed_the_approvers_listed() -> None:
    from agents.errors import SpecError
    from agents.loading import parse_spec

    def spec(checkpoint: Any, approvers: list[str]) -> WorkflowSpec:
        return parse_spec({"name": "w", "approvers": approvers,
                           "steps": [{"name": "s", "model": "m", "prompt": "p", "checkpoint": checkpoint}]}, "w.yaml")

    cp = spec(True, ["U0ANN"]).steps[0].checkpoint
    assert (cp.max_revisions, cp.approvals, cp.self_approval) == (3, 1, True)
    with pytest.raises(SpecError, match="approvals is 3 but only 2 approver"):
        spec({"approvals": 3}, ["U0ANN", "U0BEA"])
    assert spec({"approvals": 3}, ["U0ANN", "S0EDITORS"]).steps[0].checkpoint.approvals == 3  # a group may hold more
    with pytest.raises(SpecError, match="max_revisions"):
        spec({"max_revisions": -1}, ["U0ANN"])


async def test_a_revised_version_gets_its_deadlines_afresh(db: Any, fake_model: FakeModel) -> None:
    from agents.deadlines import check_deadlines
    from tests.ops.clock import Clock, clocked_engine

    clock = Clock()
    engine = clocked_engine(db, clock)
    fake_model.default = Reply.json({"title": "Owls"})
    run_id = await waiting_run(engine, reviewed(fake_model, remind_after="2h", timeout="6h"))
    assert await check_deadlines(db, now=clock.advance(hours=2)) == [f"reminded {run_id}/draft"]
    clock.advance(minutes=30)
    await engine.revise(run_id, "draft", by="U0ANN", note="again")
    assert await engine.advance(run_id) == "awaiting_approval"
    assert await check_deadlines(db, now=clock.advance(hours=1)) == []  # v2 has waited 1 h, not 3.5
    assert await check_deadlines(db, now=clock.advance(hours=1)) == [f"reminded {run_id}/draft"]
