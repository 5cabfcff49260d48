"""A run's result: the outputs of its published steps (`publish: true`), else its last step's output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.spec import WorkflowSpec
from storage.status import DONE_STEP


def published_steps(spec: WorkflowSpec) -> list[str]:
    """The steps whose outputs make the result, in order: those marked `publish: true`, else the last one."""
    marked = [s.name for s in spec.steps if s.publish]
    return marked or [spec.steps[-1].name]


def result_outputs(spec: WorkflowSpec | Mapping[str, Any], step_runs: Sequence[Any]) -> dict[str, Any]:
    """Step name -> output of each published step that has completed (a run's snapshot spec accepted)."""
    if not isinstance(spec, WorkflowSpec):
        spec = WorkflowSpec.model_validate(spec)
    done = {s.step: s.output for s in step_runs if s.status in DONE_STEP}
    return {name: done[name] for name in published_steps(spec) if name in done}
