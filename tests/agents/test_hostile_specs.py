"""A spec cannot hurt the process: a broken or hostile file is one line naming it, and templates are bounded."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.errors import SpecError, TemplateFailure
from agents.loading import MAX_SPEC_BYTES, load_spec, load_workflows, parse_spec
from agents.templates import render
from tests.helpers.paths import REPO

EXAMPLE = REPO / "workflows" / "content-update.yaml"
GOOD = EXAMPLE.read_text()


def billion_laughs() -> str:
    """The classic alias bomb: about 500 bytes that expand to 9**9 strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def refusal(tmp_path: Path, content: str | bytes) -> str:
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.perf_counter()
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert time.perf_counter() - started < 2
    [line] = str(info.value).splitlines()
    assert line.startswith(f"{path}: ")
    return line


@pytest.mark.parametrize(("content", "expected"), [
    ("name: caf\xe9\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 9)"),
    (billion_laughs(), "line 6: aliases expand this file to more than 100,000 values"),
    ("x: &a [*a]\n", "an alias refers to a value that contains it"),
    ("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 100)), "nested deeper than 64 levels (through aliases)"),
    ("x: " + "[" * 5000 + "]" * 5000 + "\n", "line 1: nested deeper than 64 levels"),
    ("# " + "x" * MAX_SPEC_BYTES + "\n", "larger than 1,000,000 bytes"),
    ("x: 2001-13-45\n", "broken YAML: ValueError: month must be in 1..12"),
    ("x: " + "1" * 5000 + "\n", "broken YAML: ValueError: Exceeds the limit"),
    ("name: a\x00b\n", "broken YAML: unacceptable character #x0000"),
])
def test_a_hostile_file_is_one_line_naming_it_and_fast(tmp_path: Path, content: str | bytes, expected: str) -> None:
    assert expected in refusal(tmp_path, content)


def test_a_bomb_is_refused_before_it_grows(tmp_path: Path) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        refusal(tmp_path, billion_laughs())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(billion_laughs()) < 600 and peak < 20_000_000


def test_modest_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(GOOD.replace("retry: {attempts: 4, initial_delay: 1, max_delay: 30}", "retry: &retry {attempts: 4, initial_delay: 1, max_delay: 30}")
                    + "    retry: *retry\n")
    assert load_spec(path).step("seo-audit").retry.attempts == 4


def test_the_folder_keeps_loading_past_a_broken_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (tmp_path / "bomb.yaml").write_text(billion_laughs())
    specs, problems = load_workflows(tmp_path)
    assert list(specs) == ["content-update"]
    assert [p.split(":")[0] for p in problems] == [str(tmp_path / "bomb.yaml"), str(tmp_path / "latin1.yaml")]


def test_overseer_check_names_each_hostile_file(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (tmp_path / "bomb.yaml").write_text(billion_laughs())
    (tmp_path / "huge.yaml").write_text(GOOD.replace("{{ steps.draft.output.body }}", "{{ 'A' * 4000000000 }}"))
    done = subprocess.run([sys.executable, "-m", "bot.cli", "check", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert any(line.startswith(f"{tmp_path / 'latin1.yaml'}: not UTF-8") for line in lines)
    assert any(line.startswith(f"{tmp_path / 'bomb.yaml'}: line 6: aliases expand") for line in lines)
    assert any(line.startswith(f"{tmp_path / 'huge.yaml'}: steps[2] (seo-audit).prompt: a repeated value") for line in lines)


# --- templates: bounded at render, and what is constant is caught by the check --------------------

CONTEXT = {"inputs": {"s": "x" * 1000, "n": 10**9}, "steps": {}}


@pytest.mark.parametrize(("source", "expected"), [
    ("{% for i in range(10**9) %}x{% endfor %}", "Range too big"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps of work"),
    ("{{ 'A' * 4000000000 }}", "a repeated value would be 4,000,000,000 long"),
    ("{{ inputs.s * inputs.n }}", "a repeated value would be"),
    ("{{ 2 ** inputs.n }}", "bits"),
    ("{{ '%0999999999d' % 1 }}", "a width or count of 999,999,999"),
    ("{{ '{:0999999999}'.format(1) }}", "a width or count of 999,999,999"),
    ("{{ '{:{}}'.format(1, 10**9) }}", "nested {} field"),
    ("{{ 'x'.ljust(10**9) }}", "a width or count"),
    ("{{ 'x'|center(10**9) }}", "a width or count"),
    ("{{ inputs.s|replace('', inputs.s)|replace('', inputs.s) }}", "a replaced text"),
    ("{{ ('x\n' * 400000)|indent(1000) }}", "an indented text"),
    ("{{ [1]|batch(10**9, 0)|list }}", "a width or count"),
    ("{{ lipsum(10**6) }}", "lipsum()"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "namespace attribute 's'"),
    ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}", "steps of work"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RecursionError"),
    ("{% for i in range(100000) %}{{ inputs.s }}{% endfor %}", "rendered text is longer than"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
])
def test_a_template_that_asks_too_much_fails_fast_with_the_limit_it_hit(source: str, expected: str) -> None:
    started = time.process_time()  # this process's CPU: what the bound limits, whatever else the machine runs
    with pytest.raises(TemplateFailure, match="^template error: ") as info:
        render(source, CONTEXT)
    assert expected in str(info.value) and time.process_time() - started < 2


def test_ordinary_templates_render_as_before() -> None:
    source = "{{ '%d items, %s' % (3, 'ok') }}|{{ '{:>4}'.format('r') }}|{{ 'a'|center(5) }}|{{ range(3)|list }}|{{ 'ab' * 2 }}"
    assert render(source, CONTEXT) == "3 items, ok|   r|  a  |[0, 1, 2]|abab"
    assert len(render("{% for i in range(1000) %}{{ inputs.s }}{% endfor %}", CONTEXT)) == 1_000_000


@pytest.mark.parametrize(("prompt", "expected"), [
    ("{{ 'A' * 4000000000 }}", "a repeated value would be 4,000,000,000 long"),
    ("{{ 2 ** (10 ** 6) }}", "bits"),
    ("{% for i in range(1000) %}{% for j in range(1000) %}.{% endfor %}{% endfor %}", "loops over constant ranges"),
    ("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", "template syntax error: nested too deeply"),
])
def test_the_spec_check_reports_templates_that_always_break_a_limit(prompt: str, expected: str) -> None:
    data = yaml.safe_load(GOOD)
    data["steps"][2]["prompt"] = prompt
    with pytest.raises(SpecError) as info:
        parse_spec(data, "flow.yaml")
    assert any(line.startswith("flow.yaml: steps[2] (seo-audit).prompt: ") and expected in line
               for line in str(info.value).splitlines()), str(info.value)


# --- fuzz: whatever the file holds, loading answers a spec or SpecError ---------------------------

FUZZ = settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KEYS = ["name", "steps", "model", "tool", "prompt", "system", "args", "output", "format", "schema", "retry", "attempts",
        "timeout", "checkpoint", "remind_after", "escalate_to", "inputs", "type", "default", "required", "choices",
        "schedule", "cron", "timezone", "approvers", "budget_usd", "fallbacks", "temperature", "max_tokens", "properties"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(KEYS)
           | st.sampled_from(["{{ inputs.url }}", "{% for %}", "{{ steps.draft.output.x }}", "0 9 * * *", "U0ALICE", "1d",
                              "{{ 'A' * 10**10 }}", "{{ x.__class__ }}", "99 99 99 99 99", "json"]))
DATA = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5),
                    max_leaves=40)
PATHS = st.lists(st.sampled_from(KEYS) | st.integers(0, 3), min_size=1, max_size=4)


def _replaced(data: Any, path: list[Any], value: Any) -> Any:
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        if isinstance(node, dict) and key in node or isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
    if isinstance(node, dict):
        node[str(path[-1])] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value
    return data


def _loads_or_spec_error(load: Any, *args: Any) -> None:
    try:
        load(*args)
    except SpecError:
        pass


@FUZZ
@given(DATA)
def test_fuzz_parse_spec_of_any_data_only_raises_spec_error(data: Any) -> None:
    _loads_or_spec_error(parse_spec, data, "fuzz.yaml")


@FUZZ
@given(PATHS, DATA)
def test_fuzz_parse_spec_of_the_example_with_one_field_replaced_only_raises_spec_error(path: list[Any], value: Any) -> None:
    _loads_or_spec_error(parse_spec, _replaced(yaml.safe_load(GOOD), path, value), "fuzz.yaml")


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("&*ab: -[]{}\n'\"!?|>%@`#,.0\\\x00\u00e9")), max_size=300)
       | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_fuzz_load_spec_of_any_text_only_raises_spec_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _loads_or_spec_error(load_spec, path)
