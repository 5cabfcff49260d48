"""`overseer run --mock`: a whole run with no model key, no Slack and no network, marked mocked wherever it shows."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys

import pytest

from agents.contract import check_output
from agents.loading import load_workflows
from tests.fakes.web_page import WebPage
from tests.helpers.paths import REPO
from tests.helpers.processes import overseer, overseer_env

KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL")


def bare_env(db_url: str, **extra: str) -> dict[str, str]:
    """Nothing configured: no provider key, no Slack; only where the test keeps its database."""
    return {k: v for k, v in overseer_env(DATABASE_URL=db_url, **extra).items() if k not in KEYS}


def quick_start() -> list[str]:
    """The commands of README's Quick start, in order."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "the Quick start has a sh block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


async def assert_mocked_and_valid(env: dict[str, str], out: str) -> dict:
    run_id = out.splitlines()[0].split()[1]
    code, shown_json, err = await overseer(env, "show", run_id, "--json")
    assert code == 0, err
    shown = json.loads(shown_json)
    assert shown["status"] == "succeeded" and shown["mocked"] is True and shown["cost_usd"] == 0
    spec = load_workflows(REPO / "workflows")[0][shown["workflow"]]
    for step in shown["steps"]:
        check_output(spec.step(step["step"]).output, step["output"])  # raises if the output breaks its contract
    model_attempts = [a for a in shown["attempts"] if "messages" in (a["input"] or {})]
    assert model_attempts and all(a["model_used"] == "mock" and a["tokens_in"] == a["tokens_out"] == 0
                                  and a["cost_usd"] == 0 for a in model_attempts)
    code, listed, _ = await overseer(env, "runs")
    assert code == 0 and "(mock)" in listed
    code, text, _ = await overseer(env, "show", run_id)
    assert code == 0 and "mock: model steps answered" in text.splitlines()[0]
    return shown


async def test_the_readme_quick_start_is_two_commands_and_its_mocked_run_shows_a_whole_run(db_url: str) -> None:
    install, run = quick_start()
    assert install == "pip install -e ."
    args = shlex.split(run)
    assert args[:4] == ["overseer", "run", "ticket-triage", "--mock"]
    env = bare_env(db_url)  # the workflows are the clone's ./workflows, as on a fresh machine
    code, out, err = await overseer(env, *args[1:])
    assert code == 0, err
    assert "mock" in out.splitlines()[0] and "✓ triage" in out and "✓ summary" in out and "succeeded" in out.splitlines()[-1]
    shown = await assert_mocked_and_valid(env, out)
    assert shown["inputs"]["ticket"] == "My invoice is wrong"
    triage = next(s for s in shown["steps"] if s["step"] == "triage")["output"]
    assert set(triage) == {"category", "priority", "reply"}


@pytest.mark.parametrize(
    ("workflow", "inputs"),
    [("support-reply", ["email=Where is my refund?", "--yes"]), ("content-update", ["url={page}", "--yes"])],
)
async def test_every_example_workflow_runs_mocked_without_a_key(db_url: str, page: WebPage, workflow: str,
                                                                inputs: list[str]) -> None:
    env = bare_env(db_url, OVERSEER_FETCH_ALLOW="127.0.0.1")  # content-update's tool still runs: on a local page
    args = [a.format(page=page.url()) for a in inputs]
    code, out, err = await overseer(env, "run", workflow, "--mock", *args)
    assert code == 0, err
    await assert_mocked_and_valid(env, out)
    if workflow == "content-update":
        assert page.hits == ["/pricing"]


async def test_a_mocked_run_never_imports_litellm(db_url: str) -> None:
    env = bare_env(db_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", "-m", "bot.cli", "run", "ticket-triage", "--mock", "ticket=hi",
        cwd=str(REPO), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"litellm" not in err
