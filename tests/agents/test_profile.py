"""The profile's pure parts: the spec a profile runs, and figures when runs fail part way."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agents.loading import parse_spec
from agents.profile import profile_spec, summarize

SPEC = parse_spec({
    "name": "two", "channel": "C0TWO",
    "steps": [
        {"name": "first", "model": "openai/gpt-4o-mini", "fallbacks": ["openai/gpt-3.5-turbo"], "prompt": "a"},
        {"name": "fetch", "tool": "fetch_page", "args": {"url": "https://example.com"}},
    ],
}, "two.yaml")


@dataclass
class Tried:
    run_id: str
    step: str
    number: int
    cost_usd: float
    latency_ms: float
    status: str = "succeeded"


def test_a_profile_runs_without_a_channel_and_an_alternative_model_replaces_model_and_fallbacks() -> None:
    assert profile_spec(SPEC).channel is None and profile_spec(SPEC).steps == SPEC.steps
    alt = profile_spec(SPEC, "openai/gpt-4o")
    assert (alt.steps[0].model, alt.steps[0].fallbacks, alt.steps[1]) == ("openai/gpt-4o", (), SPEC.steps[1])
    assert SPEC.steps[0].model == "openai/gpt-4o-mini" and SPEC.channel == "C0TWO"  # the loaded spec is untouched


def test_a_step_never_reached_is_not_counted_and_a_failed_run_still_costs() -> None:
    attempts = [
        Tried("r1", "first", 1, 0.01, 100), Tried("r1", "fetch", 1, 0.0, 50),
        Tried("r2", "first", 1, 0.02, 200, "failed"), Tried("r2", "first", 2, 0.02, 300, "failed"),
    ]
    profile = summarize(None, SPEC, {"r1": "succeeded", "r2": "failed"}, attempts)
    first, fetch, total = profile.steps["first"], profile.steps["fetch"], profile.total
    assert (first.runs, first.cost_per_run_usd, first.first_attempt_pass, first.retries) == (2, pytest.approx(0.025), 0.5, 1)
    assert (fetch.runs, fetch.first_attempt_pass, fetch.latency_p95_ms) == (1, 1.0, 50)
    assert (total.runs, total.cost_p50_usd, total.latency_p50_ms) == (2, pytest.approx(0.025), 325)
    assert (total.first_attempt_pass, total.retries) == (pytest.approx(2 / 3), 1)
    assert profile.statuses == {"succeeded": 1, "failed": 1}
