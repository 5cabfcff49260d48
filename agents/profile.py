"""Cost profiles: what a workflow costs and how it does, computed from the attempts of profile runs.

A profile runs each sample (`overseer profile`) through the real engine; this module holds the pure
parts: reading the samples, the spec a profile runs (`profile_spec`), and the figures.

Definitions, per step and in total, over the runs of one model variant:

- cost per run: the mean over runs of the cost of the step's attempts in that run (retries and
  failed attempts included); cost p50 / p95: percentiles of the same per-run costs.
- latency p50 / p95: percentiles over runs of the time spent in the step's calls (the sum of its
  attempts' latency, backoff waits and checkpoint waits left out); in total, over all steps.
- first-attempt pass: the share of step calls (a step in a run) whose first attempt produced output
  that met the step's contract; a step never reached (an earlier one failed) is not counted.
- retries: attempts beyond the first, summed over all runs (fallback models included).

Percentiles interpolate linearly between ranks (agents.digest.percentile, as the digest does).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from agents.digest import percentile
from agents.errors import UserInputError
from agents.inputs import coerce_inputs
from agents.spec import ModelStep, WorkflowSpec
from storage.status import AttemptStatus

MAX_REPEAT = 100


class AttemptLike(Protocol):
    run_id: str
    step: str
    number: int
    cost_usd: float
    latency_ms: float
    status: str


def read_samples(text: str, source: str, spec: WorkflowSpec) -> list[dict[str, Any]]:
    """The samples of a JSON Lines file (one object of inputs a line, blank lines skipped), each checked
    against the spec; a bad line is a UserInputError naming `source` and its line number."""
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{source}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(sample, dict):
            raise UserInputError(f"{source}:{number}: not a JSON object of inputs")
        try:
            coerce_inputs(spec, sample)
        except UserInputError as exc:
            raise UserInputError(f"{source}:{number}: {exc}") from None
        samples.append(sample)
    if not samples:
        raise UserInputError(f"{source}: no samples (one JSON object of inputs per line)")
    return samples


def profile_spec(spec: WorkflowSpec, model: str | None = None) -> WorkflowSpec:
    """The spec a profile runs: no channel (nothing is announced), and with `model` every model step's
    model replaced by it and its fallbacks dropped, so the figures are that model's alone."""
    steps = tuple(
        step.model_copy(update={"model": model, "fallbacks": ()}) if model and isinstance(step, ModelStep) else step
        for step in spec.steps
    )
    return spec.model_copy(update={"channel": None, "steps": steps})


@dataclass(frozen=True)
class Figures:
    """One step's (or the whole run's) figures over a variant's runs."""

    runs: int
    cost_per_run_usd: float | None
    cost_p50_usd: float | None
    cost_p95_usd: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    first_attempt_pass: float | None
    retries: int


def figures(per_run: Sequence[Sequence[AttemptLike]], calls: int, passed: int) -> Figures:
    """Figures from each run's attempts (of one step, or all), and how many step calls passed at once."""
    costs = sorted(sum(a.cost_usd for a in attempts) for attempts in per_run)
    latencies = sorted(sum(a.latency_ms for a in attempts) for attempts in per_run)
    return Figures(
        runs=len(per_run),
        cost_per_run_usd=sum(costs) / len(costs) if costs else None,
        cost_p50_usd=percentile(costs, 0.5), cost_p95_usd=percentile(costs, 0.95),
        latency_p50_ms=percentile(latencies, 0.5), latency_p95_ms=percentile(latencies, 0.95),
        first_attempt_pass=passed / calls if calls else None,
        retries=sum(len(attempts) - _calls(attempts) for attempts in per_run),
    )


def _calls(attempts: Iterable[AttemptLike]) -> int:
    """How many step calls these attempts belong to (one per step)."""
    return len({a.step for a in attempts})


def _passed_first(attempts: Iterable[AttemptLike]) -> bool:
    return any(a.number == 1 and a.status == AttemptStatus.SUCCEEDED for a in attempts)


@dataclass(frozen=True)
class VariantProfile:
    """The figures of one model variant: per step, in the spec's order, and in total."""

    model: str | None  # None: as the spec says
    run_ids: list[str]
    statuses: dict[str, int]
    steps: dict[str, Figures]
    total: Figures

    def to_payload(self) -> dict[str, Any]:
        """Plain JSON for --json."""
        return {
            "model": self.model, "runs": len(self.run_ids), "statuses": self.statuses, "run_ids": self.run_ids,
            "steps": [{"step": name, **asdict(f)} for name, f in self.steps.items()], "total": asdict(self.total),
        }


def summarize(
    model: str | None, spec: WorkflowSpec, statuses: dict[str, str], attempts: Iterable[AttemptLike]
) -> VariantProfile:
    """A variant's profile from its runs' final statuses (run id -> status) and their attempts."""
    by_step: dict[str, dict[str, list[AttemptLike]]] = defaultdict(lambda: defaultdict(list))
    for attempt in attempts:
        by_step[attempt.step][attempt.run_id].append(attempt)
    steps = {}
    for step in spec.steps:
        runs = list(by_step[step.name].values())
        steps[step.name] = figures(runs, len(runs), sum(_passed_first(r) for r in runs))
    per_run = [[a for step_runs in by_step.values() for a in step_runs.get(run_id, [])] for run_id in statuses]
    calls = sum(f.runs for f in steps.values())
    passed = sum(_passed_first(r) for step_runs in by_step.values() for r in step_runs.values())
    counted: dict[str, int] = defaultdict(int)
    for status in statuses.values():
        counted[status] += 1
    return VariantProfile(model, list(statuses), dict(counted), steps, figures(per_run, calls, passed))
