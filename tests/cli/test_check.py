"""`overseer check`: every problem of every file in one pass, the spec lints as warnings, --strict fails on them."""

from __future__ import annotations

from pathlib import Path

import yaml

from agents.loading import lint_spec, load_workflows, parse_spec
from tests.helpers.paths import REPO
from tests.helpers.processes import overseer, overseer_env

KEYS = {"OPENAI_API_KEY": "sk-fake-key-for-check", "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-check"}


def write(folder: Path, name: str, spec: dict) -> None:
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))


def lax() -> dict:
    """Valid, but breaks every lint: no description, no budget, a step without a contract, JSON without a schema."""
    return {"name": "lax", "steps": [
        {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "hi"},
        {"name": "audit", "model": "openai/gpt-4o-mini", "prompt": "x", "output": {"format": "json"}},
    ]}


async def test_a_misspelt_tool_fails_check_naming_the_step_and_the_nearest_built_in(tmp_path: Path) -> None:
    write(tmp_path, "typo", {"name": "typo", "description": "d", "steps": [
        {"name": "crawl", "tool": "fetch_pag", "args": {"url": "https://example.com"}},
        {"name": "hook", "tool": "no_such_module.sub:func"},
    ]})
    code, out, _ = await overseer(overseer_env(**KEYS), "check", str(tmp_path))
    assert code == 2
    assert f"{tmp_path / 'typo.yaml'}: steps[0] (crawl).tool: unknown tool 'fetch_pag'" in out
    assert "(did you mean 'fetch_page'?)" in out
    assert f"{tmp_path / 'typo.yaml'}: steps[1] (hook).tool: tool 'no_such_module.sub:func' cannot be imported" in out


async def test_check_reports_errors_of_every_file_and_warnings_of_the_rest_in_one_pass(tmp_path: Path) -> None:
    write(tmp_path, "lax", lax())
    write(tmp_path, "badcron", {"name": "badcron", "steps": [{"name": "a", "tool": "fetch_page"}],
                                "schedule": {"cron": "0 25 * * *"}})
    write(tmp_path, "typo", {"name": "typo", "steps": [
        {"name": "a", "model": "openai/gpt-4o-mnii", "prompt": "{{ inputs.nope }}", "output": {"format": "text"}}]})
    code, out, _ = await overseer(overseer_env(**KEYS), "check", str(tmp_path))
    lines = out.splitlines()
    assert code == 2
    assert any("badcron.yaml: schedule" in line and "cron" in line for line in lines)
    assert any("typo.yaml: steps[0] (a).prompt" in line and "nope" in line for line in lines)
    assert "ok  lax: 2 steps, 0 checkpoint(s)" in lines  # valid: checked and linted despite the others
    warnings = [line for line in lines if line.startswith("warning  lax:")]
    assert len(warnings) == 4 and lines[-1] == "2 error(s), 4 warning(s)"
    assert any("steps[0] (draft).output: no output contract" in w for w in warnings)
    assert any("steps[1] (audit).output: format json without a schema" in w for w in warnings)
    assert any("description: none" in w for w in warnings) and any("budget_usd: none" in w for w in warnings)


async def test_warnings_pass_unless_strict_and_an_unknown_model_is_one(tmp_path: Path) -> None:
    spec = lax()["steps"][0] | {"model": "openai/gpt-4o-mnii", "output": {"format": "text"}}
    write(tmp_path, "typo", {"name": "typo", "description": "d", "budget_usd": 0.1, "steps": [spec]})
    code, out, _ = await overseer(overseer_env(**KEYS), "check", str(tmp_path))
    assert code == 0 and out.splitlines()[-1] == "0 error(s), 1 warning(s)"  # lint-clean but for the model
    assert "warning  typo: step draft: model 'openai/gpt-4o-mnii' is unknown to litellm" in out
    code, out, _ = await overseer(overseer_env(**KEYS), "check", "--strict", str(tmp_path))
    assert code == 2 and out.splitlines()[-1].endswith("(--strict: the spec warnings fail the check)")


async def test_missing_keys_warn_but_never_fail_even_strict() -> None:
    env = {k: v for k, v in overseer_env().items() if k not in KEYS}
    code, out, _ = await overseer(env, "check", "--strict", str(REPO / "workflows"))
    assert code == 0 and "needs OPENAI_API_KEY, not set" in out


def test_the_shipped_workflows_pass_every_lint() -> None:
    specs, problems = load_workflows(REPO / "workflows")
    assert not problems and {name: lint_spec(spec) for name, spec in specs.items()} == {name: [] for name in specs}


def test_a_declared_text_contract_satisfies_the_lint() -> None:
    spec = parse_spec(lax() | {"description": "d", "budget_usd": 1}, "t.yaml")
    assert lint_spec(spec) == [
        "steps[0] (draft).output: no output contract; declare `format: json` with a `schema`, or `format: text`",
        "steps[1] (audit).output: format json without a schema; any JSON passes",
    ]


def test_a_misspelt_tool_is_reported_beside_the_files_other_problems() -> None:
    from agents.errors import SpecError

    data = {"name": "both", "schedule": {"cron": "0 25 * * *"}, "steps": [{"name": "crawl", "tool": "fetch_pag"},
                                                                           {"name": "rel", "tool": "..up:x"}]}
    try:
        parse_spec(data, "both.yaml")
    except SpecError as exc:
        lines = str(exc).splitlines()
    assert any(line.startswith("both.yaml: schedule") for line in lines)
    assert "both.yaml: steps[0] (crawl).tool: unknown tool 'fetch_pag': use a built-in (fetch_page) or " \
           "package.module:function (did you mean 'fetch_page'?)" in lines
    assert any(line.startswith("both.yaml: steps[1] (rel).tool: tool '..up:x' cannot be imported") for line in lines)
