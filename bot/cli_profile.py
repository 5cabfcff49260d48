"""`overseer profile`: run samples through the real engine, then print what each step cost and how it did.

Profile runs are recorded like any other (trigger `profile`) but are never announced: they start
without a channel, so a dispatcher that sees their outbox rows has nowhere to post them, and the
rows are marked delivered as the runs go (bot.cli_drive, as `overseer run` does), so none waits in
the outbox either. Checkpoints are approved automatically, by the terminal's user.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from agents.errors import UserInputError
from agents.profile import MAX_REPEAT, Figures, VariantProfile, profile_spec, read_samples, summarize
from agents.spec import WorkflowSpec
from bot.cli_drive import cli_user, drive
from bot.format import UNKNOWN, duration, money
from storage import run_queries


def load_samples(path: Path, spec: WorkflowSpec, repeat: int) -> list[dict[str, Any]]:
    """The samples file's inputs, every line checked before any run starts."""
    if not 1 <= repeat <= MAX_REPEAT:
        raise UserInputError(f"--repeat must be between 1 and {MAX_REPEAT}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: cannot read the samples: {exc.strerror or exc}") from None
    return read_samples(text, str(path), spec)


async def profile(engine: Any, spec: WorkflowSpec, samples: list[dict[str, Any]], models: list[str], repeat: int) -> list[VariantProfile]:
    """Run every sample `repeat` times as the spec says, then again with each of `models`."""
    variants = []
    for model in [None, *models]:
        variant = profile_spec(spec, model)
        statuses = {}
        for sample in samples:
            for _ in range(repeat):
                run_id = await engine.start(variant, sample, started_by=cli_user(), trigger="profile")
                statuses[run_id] = await drive(engine, run_id, yes=True, out=io.StringIO())
        async with engine.db.sessions() as session:
            attempts = [a for run_id in statuses for a in await run_queries.attempts(session=session, run_id=run_id)]
        variants.append(summarize(model, spec, statuses, attempts))
    return variants


def payload(spec: WorkflowSpec, samples: int, repeat: int, variants: list[VariantProfile]) -> dict[str, Any]:
    """The profile as plain JSON (--json)."""
    return {"workflow": spec.name, "samples": samples, "repeat": repeat, "variants": [v.to_payload() for v in variants]}


def _cost(value: float | None) -> str:
    return UNKNOWN if value is None else money(value, 6)


def _latency(ms: float | None) -> str:
    return duration(None if ms is None else ms / 1000)


_ROWS: list[tuple[str, Callable[[Figures], str]]] = [
    ("cost per run", lambda f: _cost(f.cost_per_run_usd)),
    ("cost p50", lambda f: _cost(f.cost_p50_usd)),
    ("cost p95", lambda f: _cost(f.cost_p95_usd)),
    ("latency p50", lambda f: _latency(f.latency_p50_ms)),
    ("latency p95", lambda f: _latency(f.latency_p95_ms)),
    ("first-attempt pass", lambda f: UNKNOWN if f.first_attempt_pass is None else f"{f.first_attempt_pass:.0%}"),
    ("retries", lambda f: str(f.retries)),
]
TOTAL = "all steps"


def print_profile(spec: WorkflowSpec, samples: int, repeat: int, variants: list[VariantProfile], out: TextIO) -> None:
    """The figures per step and in total, one column per model variant."""
    print(f"profile of {spec.name}: {samples} sample(s) x {repeat} = {samples * repeat} run(s) per column", file=out)
    header = ["", "", *(v.model or "as specified" for v in variants)]
    table = [header, ["runs", "", *(_statuses(v) for v in variants)]]
    for name in [*(s.name for s in spec.steps), TOTAL]:
        for i, (label, show) in enumerate(_ROWS):
            table.append([name if i == 0 else "", label, *(show(_of(v, name)) for v in variants)])
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), file=out)


def _of(variant: VariantProfile, name: str) -> Figures:
    return variant.total if name == TOTAL else variant.steps[name]


def _statuses(variant: VariantProfile) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(variant.statuses.items()))
