"""`overseer eval` as a subprocess: the deploy gate's exit status, --spec, --json, and nothing to evaluate."""

from __future__ import annotations

import json
from pathlib import Path

from agents.engine import Engine
from agents.loading import load_spec
from tests.agents.test_evals import history
from tests.cli.test_cli import cli_env, overseer
from tests.fakes.fake_model import FakeModel, Reply

SPEC = """\
name: test-flow
approvers: [U0ALICE]
inputs:
  who: {{type: string, default: world}}
steps:
  - name: facts
    model: openai/gpt-4o-mini
    api_base: {api_base}
    prompt: "Facts about {{{{ inputs.who }}}}"
  - name: draft
    model: openai/gpt-4o-mini
    api_base: {api_base}
    prompt: "{prompt}"
    checkpoint: true
    output:
      format: json
      schema: {{type: object, required: [title, body]}}
"""


def write_spec(folder: Path, fake: FakeModel, prompt: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "test-flow.yaml"
    path.write_text(SPEC.format(api_base=fake.api_base, prompt=prompt))
    return path


async def test_min_agreement_gates_a_spec_change_and_spec_names_the_file(
    engine: Engine, db_url: str, fake_model: FakeModel, tmp_path: Path
) -> None:
    current = write_spec(tmp_path / "workflows", fake_model, "Write for {{ inputs.who }}: {{ steps.facts.output }}")
    await history(engine, fake_model, load_spec(current))
    env = cli_env(db_url, fake_model) | {"OVERSEER_WORKFLOWS": str(tmp_path / "workflows")}
    before = fake_model.count
    fake_model.script(Reply.json({"title": "B", "body": "y", "tags": ["c"]}), Reply.json({"title": "A", "body": "x", "tags": ["a"]}))
    code, out, err = await overseer(env, "eval", "test-flow", "--min-agreement", "0.9")
    assert code == 1, err
    assert "agreement     70.8%" in out and "disagree most:" in out and "differs at: /title" in out
    assert "below --min-agreement 0.9" in err
    assert fake_model.count - before == 2

    changed = write_spec(tmp_path / "changed", fake_model, "NEW for {{ inputs.who }}")
    before = fake_model.count
    fake_model.script(Reply.json({"title": "B2", "body": "y", "tags": ["c"]}))
    code, out, err = await overseer(env, "eval", "test-flow", "--last", "1", "--spec", str(changed),
                                    "--min-agreement", "0.9", "--json")
    assert code == 0, err
    assert json.loads(out)["agreement"] == 1.0
    assert fake_model.requests[before].body["messages"][-1]["content"] == "NEW for ben"


async def test_a_workflow_without_decided_checkpoints_exits_2_with_one_line(
    db_url: str, fake_model: FakeModel, tmp_path: Path
) -> None:
    write_spec(tmp_path / "workflows", fake_model, "Write")
    env = cli_env(db_url, fake_model) | {"OVERSEER_WORKFLOWS": str(tmp_path / "workflows")}
    code, out, err = await overseer(env, "eval", "test-flow")
    assert code == 2
    assert err.strip() == "overseer: workflow 'test-flow' has no approved or edited checkpoint to evaluate against"
