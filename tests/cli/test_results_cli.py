"""The terminal: `overseer run` ends with the result (or one JSON object with --output json), `show --output`
prints only the outputs, Ctrl-C hands the run back at once, a rejected edit keeps what was typed."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from bot.cli_progress import BesideProgress, Progress
from storage.db import Database
from tests.cli.test_cli import DRAFT, cli_env, content_model, draft_requests
from tests.cli.test_mock import bare_env
from tests.fakes.fake_model import FakeModel
from tests.fakes.web_page import WebPage
from tests.helpers.polling import eventually
from tests.helpers.processes import overseer, spawn_overseer
from tests.helpers.runs import all_runs, get_run, only_run


async def test_run_ends_with_the_published_outputs_and_show_output_prints_only_them(db_url: str) -> None:
    env = bare_env(db_url)
    code, out, err = await overseer(env, "run", "ticket-triage", "--mock", "ticket=My invoice is wrong")
    assert code == 0, err
    lines = out.splitlines()
    result = lines.index("── result: triage ──")
    assert lines[result + 1:result + 3] == ["category: billing", "priority: normal"]
    assert "── result: summary ──" in lines and "succeeded" in lines[-1]
    for step in ("triage", "summary"):  # each finished step with its time and cost, before the result
        [done] = [i for i, line in enumerate(lines) if re.fullmatch(rf"  ✓ {step} · \d+\.\ds · \$0\.0000", line)]
        assert done < result
    run_id = lines[0].split()[1]

    code, shown, _ = await overseer(env, "show", run_id, "--output", "--json")
    assert code == 0 and json.loads(shown)["triage"]["category"] == "billing" and set(json.loads(shown)) == {"triage", "summary"}
    code, shown, _ = await overseer(env, "show", run_id, "--output")
    assert code == 0 and shown.splitlines()[0] == "── result: triage ──" and "run " not in shown


async def test_run_output_json_is_one_object_on_stdout_with_progress_on_stderr(db_url: str) -> None:
    code, out, err = await overseer(bare_env(db_url), "run", "ticket-triage", "--mock", "ticket=hi", "--output", "json")
    assert code == 0, err
    result = json.loads(out)  # nothing but the object
    assert result["status"] == "succeeded" and result["mocked"] is True and len(result["run_id"]) == 12
    assert result["outputs"]["triage"]["priority"] == "normal" and isinstance(result["outputs"]["summary"], str)
    assert f"run {result['run_id']} succeeded" in err and "✓ triage" in err


async def test_the_running_step_shows_its_elapsed_time_and_a_finished_one_its_tokens_and_cost(
        db: Database, db_url: str, fake_model: FakeModel, page: WebPage) -> None:
    content_model(fake_model)
    code, out, err = await overseer(cli_env(db_url, fake_model), "run", "content-update", f"url={page.url()}", "--yes")
    assert code == 0, err
    [seo] = [line for line in out.splitlines() if line.startswith("  ✓ seo-audit")]
    assert " · 10 in / 5 out tokens · $0.0000" in seo and seo.split(" · ")[1].endswith("s")
    assert "⏸ draft waits for approval (" in out


def test_a_terminal_sees_the_running_steps_time_tick() -> None:

    screen = io.StringIO()
    progress = Progress(screen, live=True)
    progress.running = ("draft", time.monotonic() - 12)
    progress.tick()
    progress._print("  ✓ draft · 12s · $0.0000")
    assert screen.getvalue() == "\r  ⟳ draft … 12s\x1b[K\r\x1b[K  ✓ draft · 12s · $0.0000\n"


def test_a_log_line_clears_the_ticking_line_first_instead_of_running_into_it() -> None:
    screen = io.StringIO()
    progress = Progress(screen, live=True)
    progress.running = ("draft", time.monotonic())
    progress.tick()
    BesideProgress(screen).write("warning step.attempt_failed\n")
    progress.tick()
    assert screen.getvalue() == "\r  ⟳ draft … 0.0s\x1b[K\r\x1b[Kwarning step.attempt_failed\n\r  ⟳ draft … 0.0s\x1b[K"


async def test_logs_are_warnings_only_unless_verbose(db_url: str) -> None:
    code, _, quiet = await overseer(bare_env(db_url), "run", "ticket-triage", "--mock", "ticket=hi")
    assert code == 0 and "run.queued" not in quiet and "step.succeeded" not in quiet
    code, out, loud = await overseer(bare_env(db_url), "-v", "run", "ticket-triage", "--mock", "ticket=hi")
    assert code == 0 and "run.queued" in loud and "step.succeeded" in loud and "step.succeeded" not in out


async def test_ctrl_c_hands_the_run_back_at_once_and_says_how_to_resume(
        db: Database, db_url: str, fake_model: FakeModel, page: WebPage) -> None:
    release = threading.Event()
    content_model(fake_model, hang_first_draft=release)
    env = cli_env(db_url, fake_model) | {"OVERSEER_LEASE_SECONDS": "60"}  # resume would wait a minute for a held lease
    proc = await spawn_overseer(env, "run", "content-update", f"url={page.url()}", "--yes",
                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await eventually(lambda: draft_requests(fake_model) == 1, 30, "the draft to be asked for")
        os.kill(proc.pid, signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        release.set()
    run = await only_run(db)
    assert proc.returncode == 130, err.decode()
    assert f"Continue it with: overseer resume {run.id}" in err.decode()
    assert run.lease_owner is None and run.lease_expires_at is None  # handed back, not left to lapse
    started = time.monotonic()
    code, out_text, resume_err = await overseer(env, "resume", run.id, "--yes")
    assert code == 0, resume_err
    assert time.monotonic() - started < 20 and "waiting" not in out_text  # no lease to wait out
    assert (await get_run(db, run.id)).status == "succeeded"


async def test_a_rejected_edit_opens_the_editor_again_on_what_was_typed(
        tmp_path: Path, db: Database, db_url: str, fake_model: FakeModel, page: WebPage) -> None:
    content_model(fake_model)
    editor = tmp_path / "editor.py"
    seen = tmp_path / "seen.txt"
    editor.write_text(
        "import json, sys\n"
        f"seen = open({str(seen)!r}, 'a')\n"
        "path = sys.argv[1]\n"
        "text = open(path).read()\n"
        "seen.write(text + '\\n---\\n')\n"
        f"new = json.dumps({DRAFT!r}) if text.startswith('{{broken') else '{{broken, typed by hand'\n"
        "open(path, 'w').write(new)\n"
    )
    env = cli_env(db_url, fake_model) | {"EDITOR": f"{sys.executable} {editor}"}
    proc = await spawn_overseer(env, "run", "content-update", f"url={page.url()}", stdin=asyncio.subprocess.PIPE,
                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(b"e\ne\n"), 60)
    assert proc.returncode == 0, err.decode()
    first, second, _ = seen.read_text().split("\n---\n")
    assert "Pricing, made simple" in first  # the first edit starts from the output
    assert second == "{broken, typed by hand"  # the second from what was typed, refused
    assert "your edit is kept" in out.decode()


async def test_ctrl_c_at_a_checkpoint_prompt_exits_at_once_with_the_resume_command(db: Database, db_url: str) -> None:
    proc = await spawn_overseer(bare_env(db_url), "run", "support-reply", "--mock", "email=Where is my refund?",
                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def prompted() -> bool:
        return [r.status for r in await all_runs(db)] == ["awaiting_approval"]

    await eventually(prompted, 30, "the run to wait at its checkpoint")
    await asyncio.sleep(0.5)  # at the prompt now
    os.kill(proc.pid, signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 10)  # stdin stays open: nothing waits on it
    run = await only_run(db)
    assert proc.returncode == 130 and f"overseer resume {run.id}" in err.decode()
    assert run.status == "awaiting_approval"
