"""What `overseer` prints (progress, reports, errors) is redacted; the database keeps the exact record."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from agents.redact import MASK
from storage.db import Database
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.processes import overseer, overseer_env
from tests.helpers.runs import all_runs, attempts_of

TOKEN = "xoxb-1234-5678-cli-token"
SIGNING = "cli-signing-secret-0123456789"
GATEWAY = "GATEWAY_CREDENTIAL"
GATEWAY_KEY = "gw-live-5f3c9a0b7e21d4c8"
SECRETS = (TOKEN, SIGNING, GATEWAY_KEY)


def workflows(folder: Path, fake: FakeModel) -> Path:
    """A folder with a workflow whose tool leaks the Slack credentials and one whose gateway echoes its key."""
    folder.mkdir()
    leaky = {"name": "leaky", "steps": [{"name": "notify", "tool": "tests.helpers.leaky:post_with_bot_token"}]}
    gateway = {"name": "gateway", "steps": [{"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "hi",
                                             "api_base": fake.api_base, "api_key_env": GATEWAY, "retry": {"attempts": 2}}]}
    (folder / "leaky.yaml").write_text(yaml.safe_dump(leaky))
    (folder / "gateway.yaml").write_text(yaml.safe_dump(gateway))
    return folder


async def test_nothing_overseer_prints_carries_a_secret_while_the_record_is_exact(
    db: Database, db_url: str, fake_model: FakeModel, tmp_path: Path
) -> None:
    fake_model.script(Reply.status(500, message=f"upstream refused key {GATEWAY_KEY}"),
                      Reply.status(400, message=f"Invalid API key provided: {GATEWAY_KEY}"))
    env = overseer_env(DATABASE_URL=db_url, OVERSEER_WORKFLOWS=str(workflows(tmp_path / "flows", fake_model)),
                       OVERSEER_RETRY_DELAY_SCALE="0.001", SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SIGNING,
                       **{GATEWAY: GATEWAY_KEY})
    printed = []
    for workflow in ("leaky", "gateway"):
        code, out, err = await overseer(env, "run", workflow)
        assert code == 1 and "failed" in out, err
        printed.append(out + err)
    assert f"token={MASK}" in printed[0] and MASK in printed[1]

    runs = await all_runs(db)
    for run in runs:
        for args in (["show", run.id], ["show", run.id, "--json"]):
            code, out, err = await overseer(env, *args)
            assert code == 0, err
            printed.append(out + err)
    code, out, _ = await overseer(env, "runs", "--json")
    assert len(json.loads(out)) == 2
    printed.append(out)
    code, out, err = await overseer(env, "show", GATEWAY_KEY)  # the one-line error handler
    assert code == 2 and f"no run '{MASK}'" in err
    printed.append(out + err)

    for secret in SECRETS:
        assert not [text for text in printed if secret in text], secret
    recorded = " ".join([a.error_message or "" for run in runs for a in await attempts_of(db, run.id)])
    assert all(secret in recorded for secret in SECRETS)  # the record is exact


async def test_check_refuses_a_step_that_would_send_the_slack_token_to_a_model(tmp_path: Path) -> None:
    spec = {"name": "greedy", "steps": [{"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "hi",
                                         "api_key_env": "SLACK_BOT_TOKEN"}]}
    (tmp_path / "greedy.yaml").write_text(yaml.safe_dump(spec))
    code, out, _ = await overseer(overseer_env(), "check", str(tmp_path))
    assert code == 2
    assert "greedy.yaml: steps[0] (draft).api_key_env: SLACK_BOT_TOKEN is one of Overseer's own settings" in out
