"""`overseer profile`: samples run through the real engine against the fake model, figures checked by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import OutboxMessage
from tests.cli.test_cli import cli_env, overseer
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.runs import all_runs

SPEC = """
name: profiled
channel: C0PROFILE
approvers: [U0APPROVER]
inputs:
  topic: {type: string, required: true}
steps:
  - name: draft
    model: openai/gpt-4o-mini
    fallbacks: [openai/gpt-3.5-turbo]
    prompt: "Draft about {{ inputs.topic }}"
    output: {format: json, schema: {type: object, required: [title]}}
    checkpoint: true
  - name: summary
    model: openai/gpt-4o-mini
    prompt: "Summarise {{ steps.draft.output.title }}"
"""

# gpt-4o-mini: $0.15 / $0.60 per million tokens in / out; gpt-4o: $2.50 / $10.
# draft a: 1000 + 500 tokens, one attempt; b: the same twice (the first breaks the contract);
# c: 3000 + 1500, one attempt. summary: 100 + 50 tokens each run.
MINI = {"draft": [0.00045, 0.0009, 0.00135], "summary": [0.000045] * 3}
FOUR_O = {"draft": [0.0075, 0.015, 0.0225], "summary": [0.00075] * 3}


def respond(body: dict[str, Any]) -> Reply:
    said = json.dumps(body["messages"])
    if "Summarise" in said:
        return Reply.text("Short.", prompt_tokens=100, completion_tokens=50)
    topic = re.search(r"Draft about (\w+)", said).group(1)  # type: ignore[union-attr]
    if topic == "b" and "broke the output contract" not in said:
        return Reply.text("not JSON at all", prompt_tokens=1000, completion_tokens=500)
    scale = 3 if topic == "c" else 1
    return Reply.json({"title": topic}, prompt_tokens=1000 * scale, completion_tokens=500 * scale)


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "profiled.yaml").write_text(SPEC)
    (tmp_path / "samples.jsonl").write_text('{"topic": "a"}\n\n{"topic": "b"}\n{"topic": "c"}\n')
    return folder


async def profile(db_url: str, fake: FakeModel, workflows: Path, *args: str) -> tuple[int, str, str]:
    samples = workflows.parent / "samples.jsonl"
    return await overseer(cli_env(db_url, fake), "--workflows", str(workflows), "profile", "profiled",
                          "--inputs", str(samples), *args, timeout=120)


def table(out: str) -> dict[tuple[str, str], list[str]]:
    """The printed figures by (step, figure): one value per column."""
    rows, step = {}, ""
    for line in out.splitlines()[3:]:
        cells = re.split(r"\s{2,}", line.strip())
        if not line.startswith(" "):
            step = cells.pop(0)
        rows[step, cells[0]] = cells[1:]
    return rows


def expected(costs: dict[str, list[float]], repeat: int = 1) -> dict[str, tuple[float, float, float]]:
    """(per run, p50, p95) by hand: three samples, so p50 is the middle one; p95 lies 90% of the way
    from the middle to the top (rank 0.95 * 2 = 1.9), or is the top with two runs of each (rank 4.75)."""
    totals = [d + s for d, s in zip(costs["draft"], costs["summary"])]
    out = {}
    for name, values in [("draft", costs["draft"]), ("summary", costs["summary"]), ("total", totals)]:
        low, mid, top = sorted(values)
        p95 = top if repeat == 2 else mid + (top - mid) * 0.9
        out[name] = ((low + mid + top) / 3, mid, p95)
    return out


def check(variant: dict[str, Any], costs: dict[str, list[float]], repeat: int) -> None:
    figures = {s["step"]: s for s in variant["steps"]} | {"total": variant["total"]}
    for name, (per_run, p50, p95) in expected(costs, repeat).items():
        got = figures[name]
        assert (got["cost_per_run_usd"], got["cost_p50_usd"], got["cost_p95_usd"]) == pytest.approx((per_run, p50, p95)), name
        assert 0 < got["latency_p50_ms"] <= got["latency_p95_ms"]
    assert figures["draft"]["first_attempt_pass"] == pytest.approx(2 / 3)
    assert figures["summary"]["first_attempt_pass"] == 1.0
    assert figures["total"]["first_attempt_pass"] == pytest.approx(5 / 6)
    assert (figures["draft"]["retries"], figures["summary"]["retries"], figures["total"]["retries"]) == (repeat, 0, repeat)
    assert variant["runs"] == 3 * repeat and variant["statuses"] == {"succeeded": 3 * repeat}


async def test_profile_prints_cost_latency_pass_rate_and_retries_per_step_and_in_total(
    db: Database, db_url: str, fake_model: FakeModel, workflows: Path
) -> None:
    fake_model.responder = respond
    code, out, err = await profile(db_url, fake_model, workflows, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["workflow"], report["samples"], report["repeat"]) == ("profiled", 3, 1)
    [variant] = report["variants"]
    assert variant["model"] is None
    check(variant, MINI, repeat=1)

    code, out, err = await profile(db_url, fake_model, workflows)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "profile of profiled: 3 sample(s) x 1 = 3 run(s) per column"
    assert lines[1].split() == ["as", "specified"] and lines[2].split() == ["runs", "3", "succeeded"]
    shown = table(out)
    assert shown["draft", "cost per run"] == ["$0.000900"]  # (0.00045 + 0.0009 + 0.00135) / 3
    assert shown["draft", "cost p50"] == ["$0.000900"] and shown["draft", "cost p95"] == ["$0.001305"]  # 0.0009 + 0.00045 * 0.9
    assert shown["summary", "cost p95"] == ["$0.000045"]
    assert shown["all steps", "cost per run"] == ["$0.000945"] and shown["all steps", "cost p95"] == ["$0.001350"]
    assert [shown[s, "first-attempt pass"] for s in ("draft", "summary", "all steps")] == [["67%"], ["100%"], ["83%"]]
    assert [shown[s, "retries"] for s in ("draft", "summary", "all steps")] == [["1"], ["0"], ["1"]]
    assert shown["draft", "latency p50"][0].endswith("s")

    # Recorded as profile runs, and never announced: no channel, every outbox row consumed.
    runs = await all_runs(db)
    assert len(runs) == 6 and {(r.trigger, r.channel, r.status) for r in runs} == {("profile", None, "succeeded")}
    async with db.sessions() as session:
        messages = (await session.scalars(select(OutboxMessage))).all()
    assert messages and all(m.delivered_at is not None for m in messages)


async def test_profile_with_alternative_models_shows_them_side_by_side(
    db: Database, db_url: str, fake_model: FakeModel, workflows: Path
) -> None:
    fake_model.responder = respond
    code, out, err = await profile(db_url, fake_model, workflows, "--model", "openai/gpt-4o", "--repeat", "2", "--json")
    assert code == 0, err
    base, alternative = json.loads(out)["variants"]
    assert (base["model"], alternative["model"]) == (None, "openai/gpt-4o")
    check(base, MINI, repeat=2)
    check(alternative, FOUR_O, repeat=2)
    asked = [r.body["model"] for r in fake_model.requests]
    # Each column: 6 runs, 6 drafts plus 2 retries (sample b) and 6 summaries; the fallback is never asked.
    assert asked.count("gpt-4o-mini") == 14 and asked.count("gpt-4o") == 14 and len(asked) == 28

    code, out, err = await profile(db_url, fake_model, workflows, "--model", "openai/gpt-4o")
    assert code == 0, err
    header, runs = out.splitlines()[1:3]
    assert header.split() == ["as", "specified", "openai/gpt-4o"]
    assert runs.split() == ["runs", "3", "succeeded", "3", "succeeded"]
    shown = table(out)
    assert shown["draft", "cost per run"] == ["$0.000900", "$0.015000"]
    assert shown["summary", "cost p50"] == ["$0.000045", "$0.000750"]
    assert shown["all steps", "cost p95"] == ["$0.001350", "$0.022500"]  # 0.01575 + (0.02325 - 0.01575) * 0.9


@pytest.mark.parametrize(
    ("samples", "args", "message"),
    [
        ('{"topic": "a"}\nnot json\n', [], "samples.jsonl:2: not JSON"),
        ('{"topic": "a"}\n\n[1, 2]\n', [], "samples.jsonl:3: not a JSON object of inputs"),
        ('{"topic": "a"}\n{"topic": "b", "colour": "red"}\n', [], "samples.jsonl:2: unknown input 'colour'"),
        ("\n\n", [], "samples.jsonl: no samples"),
        ('{"topic": "a"}\n', ["--repeat", "0"], "--repeat must be between 1 and 100"),
        (None, [], "samples.jsonl: cannot read the samples"),
    ],
)
async def test_bad_samples_are_one_line_naming_the_line_exit_2_and_run_nothing(
    fake_model: FakeModel, workflows: Path, samples: str | None, args: list[str], message: str
) -> None:
    db_url = f"sqlite:///{workflows.parent / 'untouched.db'}"
    path = workflows.parent / "samples.jsonl"
    if samples is None:
        path.unlink()
    else:
        path.write_text(samples)
    code, out, err = await profile(db_url, fake_model, workflows, *args)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert fake_model.requests == [] and not (workflows.parent / "untouched.db").exists()  # checked before opening it
