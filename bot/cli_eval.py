"""`overseer eval` for people: agreement, the cost and latency change, and the cases that disagree most."""

from __future__ import annotations

from typing import TextIO

from agents.evals import EvalReport
from bot.format import duration, money, readable


def _signed_money(value: float) -> str:
    return f"{'+' if value >= 0 else '-'}{money(abs(value))}"


def _signed_ms(value: float) -> str:
    return f"{'+' if value >= 0 else '-'}{duration(abs(value) / 1000)}"


def print_eval(report: EvalReport, out: TextIO) -> None:
    """The report as a few aligned lines, then the worst cases."""
    t = report.totals()
    n = len(report.cases)
    model = f" with {report.model}" if report.model else ""
    print(f"eval {report.workflow}{model}: {n} decided checkpoint(s) re-run", file=out)
    print(f"  agreement     {report.agreement * 100:.1f}%  (JSON: share of leaf fields equal; text: difflib ratio)", file=out)
    print(f"  schema valid  {report.schema_valid_rate * 100:.0f}%", file=out)
    print(f"  cost          {money(t['old_cost_usd'])} → {money(t['new_cost_usd'])} ({_signed_money(t['cost_change_usd'])})", file=out)
    print(f"  latency       {duration(t['old_latency_ms'] / 1000)} → {duration(t['new_latency_ms'] / 1000)} per case "
          f"({_signed_ms(t['latency_change_ms'])})", file=out)
    worst = report.worst()
    if not worst:
        print("  every case agrees with what people approved", file=out)
        return
    print("disagree most:", file=out)
    for case in worst:
        print(f"  {case.run_id} {case.step} ({case.action} by {case.decided_by}): {case.agreement * 100:.1f}%", file=out)
        if case.error:
            print(f"      error: {case.error}", file=out)
        elif case.differing:
            print(f"      differs at: {', '.join(case.differing)}", file=out)
        else:
            print(f"      approved: {readable(case.expected)[:200]!r}", file=out)
            print(f"      now:      {readable(case.got)[:200]!r}", file=out)
