"""People read one vocabulary everywhere: money, durations, values, marks and decision words."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot import format as fmt
from storage.status import Action, RunStatus, StepStatus


@pytest.mark.parametrize(("value", "places", "shown"), [
    (None, 4, "$0.0000"), (0, 4, "$0.0000"), (0.00126, 4, "$0.0013"), (0.000015, 6, "$0.000015"), (12.5, 4, "$12.5000"),
])
def test_an_exact_cost_has_a_fixed_number_of_places_and_none_is_nothing_spent(value, places, shown) -> None:
    assert fmt.money(value, places) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (None, "–"), (0, "$0.00"), (0.1367, "$0.1367"), (0.99996, "$1.0000"), (1, "$1.00"), (1234.567, "$1,234.57"),
])
def test_a_cost_in_a_summary_is_in_cents_from_a_dollar_up_and_unknown_is_a_dash(value, shown) -> None:
    assert fmt.money_short(value) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "–"), (0, "0.0s"), (0.44, "0.4s"), (9.96, "10.0s"), (10, "10s"), (59.5, "1m 00s"), (90, "1m 30s"),
    (362, "6m 02s"), (3600, "1h 00m"), (5400, "1h 30m"), (86399.6, "1d 0h"), (2 * 86400 + 3 * 3600 + 59, "2d 3h"),
    (400 * 86400, "400d 0h"),
])
def test_a_duration_is_short_rounded_and_says_days_when_long(seconds, shown) -> None:
    assert fmt.duration(seconds) == shown


def test_a_span_needs_both_ends() -> None:
    start = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)
    assert fmt.span(start, start + timedelta(minutes=12, seconds=30)) == "12m 30s"
    assert fmt.span(start, None) == "–" and fmt.span(None, start) == "–"


@pytest.mark.parametrize(("value", "shown"), [
    (None, ""), ("", ""), ("plain text", "plain text"), (0, "0"), (False, "false"), ([], "[]"),
    ({"é": [1]}, '{\n  "é": [\n    1\n  ]\n}'), ({"at": datetime(2026, 1, 2)}, '{\n  "at": "2026-01-02 00:00:00"\n}'),
])
def test_a_value_reads_as_itself_or_indented_json_and_none_as_nothing(value, shown) -> None:
    assert fmt.readable(value) == shown


def test_every_status_has_a_mark_and_an_unknown_one_is_left_as_it_is() -> None:
    assert {fmt.step_icon(s) for s in StepStatus} <= {"·", "⟳", "✓", "✗", "⏸"}
    assert fmt.step_icon("approved") == "✓" and fmt.step_icon("nonsense") == "·"
    assert all(fmt.run_state(s).endswith(s.replace("awaiting_approval", "waiting for approval")) for s in RunStatus)
    assert fmt.run_state(RunStatus.CANCELLED) == "⊘ cancelled" and fmt.run_state("nonsense") == "nonsense"


def test_decision_words_use_the_actions_past_tense() -> None:
    assert [fmt.decision(a) for a in Action] == ["✓ Approved", "✎ Edited and approved", "✗ Rejected", "✗ Expired"]
    assert fmt.decision("shrug") == "shrug"
