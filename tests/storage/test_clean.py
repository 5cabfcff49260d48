"""Text and JSON are storable on both databases: NUL and lone surrogates are stored as U+FFFD, by every write."""

from __future__ import annotations

from sqlalchemy import select

from storage import driver_queries, outbox_queries, run_queries
from storage.clean import storable
from storage.db import Database, run_writes
from storage.models import Attempt, Event, Run, utcnow

BAD = "a\x00b\ud800c"
STORED = "a\ufffdb\ufffdc"


def test_storable_replaces_in_strings_keys_and_nested_values_and_leaves_the_rest() -> None:
    assert storable({BAD: (BAD, 1, None, 2.5, True)}) == {STORED: [STORED, 1, None, 2.5, True]}
    clean = "plain text, café"
    assert storable(clean) is clean and storable(None) is None


async def _new_run(db: Database) -> None:
    now = utcnow()
    values = {"id": "r1", "workflow": "w", "inputs": {"who": BAD}, "spec": {}, "started_by": "t", "trigger": "cli",
              "status": "queued", "channel": None, "created_at": now, "updated_at": now}
    async with db.sessions.begin() as session:
        assert await run_writes(session, driver_queries.new_run_writes(values, ["s"]))


async def test_core_writes_store_unstorable_characters_replaced(db: Database) -> None:
    await _new_run(db)
    now = utcnow()
    attempt = Attempt(run_id="r1", step="s", number=1, model="m", fallback_index=0, model_attempt=1,
                      model_used="x\x00" * 300, input={"messages": [{"content": BAD}]}, raw_output=BAD,
                      parsed_output={BAD: [BAD]}, error_type=None, error_message=BAD, tokens_in=1, tokens_out=1,
                      cost_usd=0.0, latency_ms=1.0, started_at=now, status="succeeded")
    async with db.sessions.begin() as session:
        [step] = await run_queries.step_runs(session=session, run_id="r1")
        assert await run_writes(session, [
            driver_queries.start_step_write(step_run_id=step.id, call_input={"prompt": BAD}, now=now),
            driver_queries.attempt_start_write(attempt),
            driver_queries.attempt_end_write(attempt),
            driver_queries.end_step_write(step_run_id=step.id, status="succeeded", output=[BAD], now=now, attempt=attempt),
            outbox_queries.outbox_write([("r1", "step_failed", {"error": BAD, BAD: 1}, None)]),
        ])
    async with db.sessions() as session:
        run = await run_queries.get_run(session=session, run_id="r1")
        [stored] = await run_queries.attempts(session=session, run_id="r1")
        [step] = await run_queries.step_runs(session=session, run_id="r1")
        [message] = await outbox_queries.outbox_since(session=session, after_id=0)
    assert run is not None and run.inputs == {"who": STORED}
    assert (stored.raw_output, stored.error_message, stored.parsed_output) == (STORED, STORED, {STORED: [STORED]})
    assert stored.input == {"messages": [{"content": STORED}]}
    assert stored.model_used == "x\ufffd" * 100  # the provider's name, cut to the column's 200 characters
    assert (step.input, step.output) == ({"prompt": STORED}, [STORED])
    assert message.payload == {"error": STORED, STORED: 1}


async def test_orm_writes_store_unstorable_characters_replaced(db: Database) -> None:
    await _new_run(db)
    async with db.sessions.begin() as session:
        await run_queries.set_run_status(session=session, run_id="r1", to="failed", allowed_from=("queued",), error=BAD)
        run_queries.add_event(session=session, run_id="r1", kind="k", actor="a", note=BAD)
    async with db.sessions() as session:
        run = await run_queries.get_run(session=session, run_id="r1")
        [event] = (await session.scalars(select(Event))).all()
    assert run is not None and isinstance(run, Run) and run.error == STORED
    assert event.detail == {"note": STORED}
