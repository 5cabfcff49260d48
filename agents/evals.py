"""Evals from what people approved: re-run decided checkpoints under a spec and score the new outputs.

Selection: the last N decisions with action approve or edit of a workflow's runs (storage.eval_queries).
The human's final is the edited output for an edit, the original output for an approval.

Re-running: the real Engine drives a throwaway run (trigger `eval`) in a scratch SQLite database made
for the eval and deleted after it, so nothing reaches the real outbox and nothing can be posted to
Slack. The throwaway run's spec is the spec under test cut after the step; the steps before it are
recorded as succeeded with the outputs the original run recorded, so the engine replays them and
renders the step's input from the original run's inputs under the new templates.

Scoring, per case (0..1):
- schema valid: the new output passes the step's output contract (a step that failed has none).
- JSON: the share of leaf fields equal; the leaves are those of the human's final and of the new
  output together (a field on one side only disagrees), an empty object or list is one leaf.
- text: difflib.SequenceMatcher(None, human, new, autojunk=False).ratio().
- a case without a new output (the step failed, the spec has no such step) scores 0.
Agreement is the mean of the cases' scores. Cost and latency: the sum over the step's attempts,
original run against throwaway run.
"""

from __future__ import annotations

import difflib
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.contract import check_output
from agents.engine import Engine, EngineSettings
from agents.errors import OverseerError, UserInputError
from agents.spec import ModelStep, WorkflowSpec
from storage import eval_queries, run_queries
from storage.db import Database, connect
from storage.migrate import upgrade
from storage.models import Decision, Run
from storage.status import Action, StepStatus

EVAL_TRIGGER = "eval"
WORST = 3


class NothingToEvaluate(UserInputError):
    """The workflow has no checkpoint a person approved or edited."""

    code = "nothing_to_evaluate"


@dataclass(frozen=True)
class Case:
    """One decided checkpoint, re-run and scored."""

    run_id: str
    step: str
    action: str
    decided_by: str
    expected: Any
    got: Any = None
    schema_valid: bool = False
    agreement: float = 0.0
    differing: list[str] = field(default_factory=list)  # JSON paths that disagree (first few)
    error: str | None = None
    old_cost_usd: float = 0.0
    new_cost_usd: float = 0.0
    old_latency_ms: float = 0.0
    new_latency_ms: float = 0.0


@dataclass(frozen=True)
class EvalReport:
    """Every case of an eval and the figures over them."""

    workflow: str
    model: str | None
    cases: list[Case]

    @property
    def agreement(self) -> float:
        """The mean agreement over the cases."""
        return sum(c.agreement for c in self.cases) / len(self.cases)

    @property
    def schema_valid_rate(self) -> float:
        """The share of cases whose new output passes the contract."""
        return sum(c.schema_valid for c in self.cases) / len(self.cases)

    def totals(self) -> dict[str, float]:
        """Cost (sums) and latency (means per case) of the original attempts and the re-runs."""
        n = len(self.cases)
        old_cost, new_cost = sum(c.old_cost_usd for c in self.cases), sum(c.new_cost_usd for c in self.cases)
        old_ms, new_ms = sum(c.old_latency_ms for c in self.cases) / n, sum(c.new_latency_ms for c in self.cases) / n
        return {"old_cost_usd": old_cost, "new_cost_usd": new_cost, "cost_change_usd": new_cost - old_cost,
                "old_latency_ms": old_ms, "new_latency_ms": new_ms, "latency_change_ms": new_ms - old_ms}

    def worst(self, n: int = WORST) -> list[Case]:
        """The n cases that disagree most (below full agreement), worst first."""
        return sorted((c for c in self.cases if c.agreement < 1.0), key=lambda c: (c.agreement, c.run_id))[:n]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for scripts."""
        return {"workflow": self.workflow, "model": self.model, "agreement": self.agreement,
                "schema_valid_rate": self.schema_valid_rate, **self.totals(),
                "worst": [c.run_id for c in self.worst()], "cases": [asdict(c) for c in self.cases]}


# --- scoring -------------------------------------------------------------------------------------


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a JSON value by its path (/a/0/b); an empty object or list is a leaf."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{path}/{key}").items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{path}/{i}").items()}
    return {path or "/": value}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # True is not 1 here


def json_agreement(expected: Any, got: Any) -> tuple[float, list[str]]:
    """(share of leaf fields equal, the paths that differ) over the leaves of both values."""
    want, have = leaves(expected), leaves(got)
    paths = sorted(want.keys() | have.keys())
    differing = [p for p in paths if not (p in want and p in have and _same(want[p], have[p]))]
    return (1 - len(differing) / len(paths)), differing


def text_agreement(expected: str, got: str) -> float:
    """difflib's similarity ratio of two texts (1.0 = the same)."""
    return difflib.SequenceMatcher(None, expected, got, autojunk=False).ratio()


def score(spec: WorkflowSpec, step: str, expected: Any, got: Any) -> tuple[bool, float, list[str]]:
    """(schema valid, agreement, differing JSON paths) of a new output against the human's final."""
    output = spec.step(step).output
    try:
        check_output(output, got)
    except OverseerError:
        valid = False
    else:
        valid = True
    if output.format == "json":
        agreement, differing = json_agreement(expected, got)
        return valid, agreement, differing[:10]
    return valid, text_agreement(str(expected), str(got)), []


# --- selection and re-running --------------------------------------------------------------------


def human_final(decision: Decision) -> Any:
    """What the person let through: their edit, or the output they approved."""
    return decision.edited_output if decision.action == Action.EDIT else decision.original_output


def _under_test(spec: WorkflowSpec, step: str, model: str | None) -> WorkflowSpec:
    """The spec cut after `step`, with `model` (and no fallbacks) on that step if given."""
    names = [s.name for s in spec.steps]
    target = spec.steps[names.index(step)]
    if model and isinstance(target, ModelStep):
        target = target.model_copy(update={"model": model, "fallbacks": ()})
    return spec.model_copy(update={"steps": (*spec.steps[: names.index(step)], target)})


async def _original(db: Database, run: Run, step: str) -> tuple[dict[str, Any], float, float]:
    """(outputs of the run's steps, the step's attempts' cost and latency) as the original run recorded them."""
    async with db.sessions() as session:
        outputs = {s.step: s.output for s in await run_queries.step_runs(session=session, run_id=run.id)}
        tried = await run_queries.attempts(session=session, run_id=run.id, step=step)
    return outputs, sum(a.cost_usd for a in tried), sum(a.latency_ms for a in tried)


async def _rerun(engine: Engine, spec: WorkflowSpec, run: Run, outputs: dict[str, Any]) -> tuple[Any, str | None, float, float]:
    """(new output or None, why there is none, cost, latency) of the spec's last step on a throwaway run."""
    *before, target = spec.steps
    missing = [s.name for s in before if s.name not in outputs]
    if missing:
        return None, f"the original run has no output of {', '.join(missing)}", 0.0, 0.0
    run_id = await engine.start(spec, dict(run.inputs), started_by=EVAL_TRIGGER, trigger=EVAL_TRIGGER)
    async with engine.db.sessions.begin() as session:
        for step_run in (await run_queries.step_runs(session=session, run_id=run_id))[: len(before)]:
            await run_queries.set_step_status(session=session, step_run_id=step_run.id, to=StepStatus.SUCCEEDED,
                                              allowed_from=(StepStatus.PENDING,), output=outputs[step_run.step])
    await engine.advance(run_id)
    async with engine.db.sessions() as session:
        step_run = await run_queries.get_step_run(session=session, run_id=run_id, step=target.name)
        tried = await run_queries.attempts(session=session, run_id=run_id, step=target.name)
    done = step_run is not None and step_run.status not in (StepStatus.FAILED, StepStatus.PENDING, StepStatus.RUNNING)
    error = None if done else (step_run.error if step_run else None) or "the step did not finish"
    return (step_run.output if done else None), error, sum(a.cost_usd for a in tried), sum(a.latency_ms for a in tried)


async def _case(db: Database, engine: Engine, spec: WorkflowSpec, decision: Decision, run: Run, model: str | None) -> Case:
    base = Case(run_id=run.id, step=decision.step, action=decision.action, decided_by=decision.decided_by,
                expected=human_final(decision))
    outputs, old_cost, old_ms = await _original(db, run, decision.step)
    base = replace(base, old_cost_usd=old_cost, old_latency_ms=old_ms)
    if decision.step not in {s.name for s in spec.steps}:
        return replace(base, error=f"the spec has no step {decision.step!r}")
    try:
        got, error, cost, ms = await _rerun(engine, _under_test(spec, decision.step, model), run, outputs)
    except OverseerError as exc:  # bad inputs under the new spec, a template that no longer renders
        return replace(base, error=str(exc))
    base = replace(base, new_cost_usd=cost, new_latency_ms=ms, error=error)
    if error is not None:
        return base
    valid, agreement, differing = score(spec, decision.step, base.expected, got)
    return replace(base, got=got, schema_valid=valid, agreement=agreement, differing=differing)


async def run_eval(
    db: Database, spec: WorkflowSpec, *, workflow: str, last: int = 20, model: str | None = None,
    engine_settings: EngineSettings | None = None,
) -> EvalReport:
    """Re-run the last `last` decided checkpoints of `workflow` under `spec` (and `model`) and score them.

    Raises NothingToEvaluate when no checkpoint of the workflow was approved or edited."""
    async with db.sessions() as session:
        decided = await eval_queries.decided_checkpoints(session=session, workflow=workflow, limit=last)
    if not decided:
        raise NothingToEvaluate(f"workflow {workflow!r} has no approved or edited checkpoint to evaluate against")
    with tempfile.TemporaryDirectory(prefix="overseer-eval-") as folder:
        scratch = connect(f"sqlite:///{Path(folder) / 'eval.db'}")
        try:
            await upgrade(scratch)
            engine = Engine(scratch, settings=engine_settings)
            cases = [await _case(db, engine, spec, d, r, model) for d, r in decided]
        finally:
            await scratch.dispose()
    return EvalReport(workflow=workflow, model=model, cases=cases)
