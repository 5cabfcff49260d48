"""The `overseer` CLI, run as a real subprocess: end to end, crash recovery, and clear errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import pytest

from agents.errors import ConfigError, DatabaseUnavailable, OverseerError, StepError, UserInputError
from bot import cli
from storage import run_queries
from storage.db import Database
from tests.fakes.fake_model import FakeModel, Reply
from tests.fakes.web_page import WebPage
from tests.helpers.paths import REPO
from tests.helpers.polling import eventually
from tests.helpers.processes import overseer, overseer_env, spawn_overseer
from tests.helpers.runs import all_runs, attempts_of, only_run, steps_of

DRAFT = {"title": "Pricing, made simple", "body": "Starter is $10 a month; Pro is $30 with support."}


def cli_env(db_url: str, fake: FakeModel, **extra: str) -> dict[str, str]:
    return overseer_env(
        DATABASE_URL=db_url, OVERSEER_WORKFLOWS=str(REPO / "workflows"), OPENAI_BASE_URL=fake.api_base,
        OPENAI_API_KEY="sk-fake", ANTHROPIC_API_KEY="sk-ant-fake", OVERSEER_RETRY_DELAY_SCALE="0.001",
        OVERSEER_LEASE_SECONDS="1", EDITOR="true",
        **{"OVERSEER_FETCH_ALLOW": "127.0.0.1", **extra},  # the test page is on loopback
    )


def content_model(fake: FakeModel, *, hang_first_draft: threading.Event | None = None) -> None:
    """Answer the content-update steps: the draft as JSON, the audit as text."""
    drafts = {"n": 0}

    def respond(body: dict[str, Any]) -> Reply:
        prompt = body["messages"][-1]["content"] if body["messages"][-1]["role"] == "user" else ""
        if "Rewrite this page" in prompt or "Rewrite this page" in json.dumps(body["messages"]):
            drafts["n"] += 1
            if hang_first_draft is not None and drafts["n"] == 1:
                return Reply.hang(hang_first_draft)
            return Reply.json(DRAFT)
        return Reply.text("1. The title lacks a keyword.")

    fake.responder = respond


def draft_requests(fake: FakeModel) -> int:
    return sum(1 for r in fake.requests if "Rewrite this page" in json.dumps(r.body))


async def test_the_example_workflow_runs_end_to_end_and_every_attempt_is_visible(
    db: Database, db_url: str, fake_model: FakeModel, page: WebPage
) -> None:
    content_model(fake_model)
    env = cli_env(db_url, fake_model)
    code, out, err = await overseer(env, "run", "content-update", f"url={page.url()}", "tone=formal", "--yes")
    assert code == 0, err
    run_id = out.splitlines()[0].split()[1]
    assert "✓ crawl" in out and "⏸ draft waits for approval" in out and "approved (--yes)" in out
    assert f"run {run_id} succeeded" in out
    draft_prompt = next(r for r in fake_model.requests if "Rewrite" in json.dumps(r.body)).body["messages"][-1]["content"]
    assert "formal tone" in draft_prompt and "Starter costs $10 a month." in draft_prompt and "track()" not in draft_prompt

    code, out, _ = await overseer(env, "show", run_id, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["status"] == "succeeded"
    assert [a["step"] for a in shown["attempts"]] == ["crawl", "draft", "seo-audit"]
    draft = shown["attempts"][1]
    assert draft["parsed_output"] == DRAFT and draft["tokens_in"] == 10 and draft["cost_usd"] > 0 and draft["latency_ms"] > 0
    assert shown["decisions"][0]["action"] == "approve"
    code, out, _ = await overseer(env, "show", run_id)
    assert "#1 openai/gpt-4o-mini" in out and "Pricing, made simple" in out
    code, out, _ = await overseer(env, "runs", "--json")
    assert [r["id"] for r in json.loads(out)] == [run_id]


async def test_a_run_killed_mid_step_continues_after_restart_without_repeating_completed_steps(
    db: Database, db_url: str, fake_model: FakeModel, page: WebPage
) -> None:
    release = threading.Event()
    content_model(fake_model, hang_first_draft=release)
    env = cli_env(db_url, fake_model)
    proc = await spawn_overseer(env, "run", "content-update", f"url={page.url()}", "--yes",
                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await eventually(lambda: draft_requests(fake_model) == 1, 30, "the first draft to be asked for")
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    finally:
        release.set()
    run = await only_run(db)
    assert run.status == "running" and page.hits == ["/pricing"]

    code, out, err = await overseer(env, "resume", run.id, "--yes")
    assert code == 0, err
    assert f"run {run.id} succeeded" in out
    assert page.hits == ["/pricing"]  # the completed crawl was not repeated
    assert draft_requests(fake_model) == 2  # the interrupted draft ran again, once
    steps = {s.step: s.status for s in await steps_of(db, run.id)}
    tried = [(a.step, a.number, a.status) for a in await attempts_of(db, run.id)]
    assert steps == {"crawl": "succeeded", "draft": "approved", "seo-audit": "succeeded"}
    # The draft cut off by the kill is on record too (it was recorded before its call), and counted.
    assert tried == [("crawl", 1, "succeeded"), ("draft", 1, "interrupted"), ("draft", 2, "succeeded"),
                     ("seo-audit", 1, "succeeded")]


async def test_a_pending_approval_survives_a_kill_and_can_still_be_decided(
    db: Database, db_url: str, fake_model: FakeModel, page: WebPage
) -> None:
    content_model(fake_model)
    env = cli_env(db_url, fake_model)
    proc = await spawn_overseer(env, "run", "content-update", f"url={page.url()}", stdin=asyncio.subprocess.PIPE,
                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def waiting() -> bool:
        runs = await all_runs(db)
        return len(runs) == 1 and runs[0].status == "awaiting_approval"

    await eventually(waiting, 30, "the run to wait for approval")
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    run = await only_run(db)
    code, out, err = await overseer(env, "resume", run.id, "--yes")
    assert code == 0, err
    assert page.hits == ["/pricing"] and draft_requests(fake_model) == 1
    assert (await only_run(db)).status == "succeeded"


async def test_a_rejected_or_failed_run_exits_1_and_a_waiting_one_exits_3(
    db: Database, db_url: str, fake_model: FakeModel, page: WebPage
) -> None:
    fake_model.default = Reply.status(401)
    env = cli_env(db_url, fake_model)
    code, out, _ = await overseer(env, "run", "content-update", f"url={page.url()}", "--yes")
    assert code == 1 and "✗ draft failed" in out and "the step's input was" in out and "Rewrite this page" in out
    content_model(fake_model)
    code, out, _ = await overseer(env, "run", "content-update", f"url={page.url()}")  # stdin is empty
    assert code == 3 and "waits for approval" in out


@pytest.mark.parametrize(
    ("allow", "host", "path"),
    [("", "127.0.0.1", "/admin"), ("localhost", "localhost", "/go")],  # directly, and by a 302 from an allowed host
)
async def test_a_run_cannot_fetch_an_internal_page_directly_or_through_a_redirect(
    db: Database, db_url: str, fake_model: FakeModel, page: WebPage, allow: str, host: str, path: str
) -> None:
    page.routes["/admin"] = (200, "<p>admin password: hunter2</p>", {})
    page.routes["/go"] = (302, "", {"Location": page.url("/admin")})
    content_model(fake_model)
    env = cli_env(db_url, fake_model, OVERSEER_FETCH_ALLOW=allow)
    code, out, err = await overseer(env, "run", "content-update", f"url={page.url(path, host=host)}", "--yes")
    assert code == 1 and "✗ crawl failed: fetch_page refused 127.0.0.1" in out and "OVERSEER_FETCH_ALLOW" in out, out + err
    assert "hunter2" not in out + err
    assert "/admin" not in page.hits and draft_requests(fake_model) == 0
    async with db.sessions() as session:
        tried = await run_queries.attempts(session=session, run_id=(await only_run(db)).id)
    assert [a.error_type for a in tried] == ["FetchRefused"]  # refused at once, not retried


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope"], "unknown workflow 'nope'"),
        (["run", "content-update"], "missing required input 'url'"),
        (["run", "content-update", "url"], "is not key=value"),
        (["run", "content-update", "url=x", "colour=red"], "unknown input 'colour'"),
        (["show", "zzzzzz"], "no run 'zzzzzz'"),
        (["resume", "zzzzzz"], "no run 'zzzzzz'"),
        (["digest", "--days", "0"], "--days must be between 1 and 90"),
    ],
)
async def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    db: Database, db_url: str, fake_model: FakeModel, args: list[str], message: str
) -> None:
    code, out, err = await overseer(cli_env(db_url, fake_model), *args)
    assert code == 2 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    async with db.sessions() as session:
        assert await run_queries.list_runs(session=session) == []


async def test_an_unreachable_database_is_one_line(fake_model: FakeModel) -> None:
    env = cli_env("postgresql://nobody:secret@127.0.0.1:1/none", fake_model)
    code, _, err = await overseer(env, "runs")
    assert code == 2 and "cannot open database postgresql://nobody:***@127.0.0.1:1/none" in err
    assert "secret" not in err and "Traceback" not in err


async def test_check_reports_every_problem_one_line_each(tmp_path: Any, fake_model: FakeModel) -> None:
    (tmp_path / "ok.yaml").write_text((REPO / "workflows" / "content-update.yaml").read_text())
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    (tmp_path / "typo.yaml").write_text(
        "name: typo\nsteps:\n  - name: a\n    model: openai/x\n    prompt: '{{ inputs.missing }}'\n"
        "schedule: {cron: '0 25 * * *'}\n"
    )
    code, out, err = await overseer(cli_env("sqlite://", fake_model), "check", str(tmp_path))
    lines = out.strip().splitlines()
    assert code == 2
    assert any("broken.yaml" in line and "YAML" in line for line in lines)
    assert any("typo.yaml: schedule" in line and "cron" in line for line in lines)
    code, out, _ = await overseer(cli_env("sqlite://", fake_model), "check")
    assert code == 0 and "ok  content-update" in out


async def test_without_the_model_key_a_run_fails_at_once_and_check_warns_naming_it(
    db: Database, db_url: str, fake_model: FakeModel, page: WebPage
) -> None:
    content_model(fake_model)
    env = {k: v for k, v in cli_env(db_url, fake_model).items() if k != "OPENAI_API_KEY"}
    started = time.monotonic()
    code, out, err = await overseer(env, "run", "content-update", f"url={page.url()}", "--yes")
    assert code == 1 and "✗ draft failed" in out and "OPENAI_API_KEY is not set" in out, out + err
    assert time.monotonic() - started < 10  # no backoff, no retries
    run_id = out.splitlines()[0].split()[1]
    shown = json.loads((await overseer(env, "show", run_id, "--json"))[1])
    [draft] = [a for a in shown["attempts"] if a["step"] == "draft"]  # exactly one attempt, no fallback
    assert draft["error_type"] == "MissingCredentials" and draft_requests(fake_model) == 0

    code, out, err = await overseer(env, "check")
    assert code == 0 and "ok  content-update" in out, err
    warnings = [line for line in out.splitlines() if line.startswith("warning")]
    assert warnings and all("OPENAI_API_KEY" in line for line in warnings)  # ANTHROPIC_API_KEY is set
    assert any("content-update: step draft: openai/gpt-4o-mini" in line for line in warnings)


async def test_help_answers_fast_without_importing_litellm() -> None:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", "-m", "bot.cli", "--help", cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0 and b"overseer" in out
    assert b"litellm" not in err and b"slack_bolt" not in err
    print(f"overseer --help took {time.perf_counter() - started:.2f}s")


@pytest.mark.parametrize(
    ("extra", "args", "message"),
    [
        ({}, ["serve"], "SLACK_BOT_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": "not-a-token"}, ["serve"], "SLACK_BOT_TOKEN does not look like a Slack token"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, ["serve"], "SLACK_SIGNING_SECRET is not set"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, ["serve"], "SLACK_APP_TOKEN does not look like"),
        ({"PORT": "eighty"}, ["runs"], "PORT: Input should be a valid integer"),
        ({"OVERSEER_DIGEST_TZ": "Mars/Olympus"}, ["runs"], "OVERSEER_DIGEST_TZ: unknown time zone"),
        ({"OVERSEER_DIGEST_CRON": "every day"}, ["runs"], "OVERSEER_DIGEST_CRON: bad cron expression"),
        ({"OVERSEER_COMMAND": "overseer"}, ["runs"], "OVERSEER_COMMAND: must look like /overseer"),
        ({"OVERSEER_FETCH_ALLOW": "10.0.0.0/8,no such host"}, ["runs"], "OVERSEER_FETCH_ALLOW: 'no such host' is neither"),
    ],
)
async def test_a_missing_or_malformed_setting_stops_with_one_line_naming_it(
    tmp_path: Any, fake_model: FakeModel, extra: dict[str, str], args: list[str], message: str
) -> None:
    code, _, err = await overseer(cli_env(f"sqlite:///{tmp_path / 'x.db'}", fake_model, **extra), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


class NewKindOfMistake(UserInputError):
    """A user-input error the CLI has never heard of by code."""

    code = "new_kind_of_mistake"


@pytest.mark.parametrize(
    ("error", "exit_status"),
    [(NewKindOfMistake("that is not how to write it"), 2), (ConfigError("bad setting"), 2),
     (DatabaseUnavailable("no database"), 2), (StepError("the step failed"), 1)],
)
def test_the_exit_status_follows_the_errors_type_not_its_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any, error: OverseerError, exit_status: int,
) -> None:
    def raising(args: Any, settings: Any) -> int:
        raise error

    monkeypatch.setitem(cli._COMMANDS, "runs", raising)
    monkeypatch.setattr("bot.logs.configure_logging", lambda **kw: None)
    assert cli.main(["--database", f"sqlite:///{tmp_path / 'x.db'}", "runs"]) == exit_status
    assert capsys.readouterr().err == f"overseer: {error}\n"
