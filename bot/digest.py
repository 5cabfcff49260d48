"""The digest for people: aligned plain text for the terminal, Block Kit for Slack.

Both read the JSON payload of agents.digest.Digest.to_payload() (as stored in the outbox), so a digest
renders the same whether it was computed just now or a day ago by another replica.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agents.digest import WorkflowDigest
from bot.format import UNKNOWN, duration, money_short
from bot.slack.blocks import header
from bot.slack.limits import CONTEXT_ELEMENTS, FIELD_TEXT, MAX_BLOCKS, SECTION_FIELDS, SECTION_TEXT
from bot.slack.mrkdwn import cut_escaped, escape_mrkdwn

SPARKS = "▁▂▃▄▅▆▇█"
NO_DATA = "·"

# --- small formatters ----------------------------------------------------------------------------


def sparkline(values: list[float | None]) -> str:
    """One character per value on a fixed 0..1 scale (rates); · where there is no value."""
    out = []
    for v in values:
        if v is None:
            out.append(NO_DATA)
        else:
            out.append(SPARKS[min(int(max(v, 0.0) * len(SPARKS)), len(SPARKS) - 1)])
    return "".join(out)


def pct(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value * 100:.0f}%"


def pct_fine(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value * 100:.1f}%"


def change(value: float | None) -> str:
    """A change in percentage points: ▲ 5 pts, ▼ 12 pts, ± 0 pts."""
    if value is None:
        return "no earlier data"
    points = value * 100
    if round(points) == 0:
        return "± 0 pts"
    return f"{'▲' if points > 0 else '▼'} {abs(points):.0f} pts"


def _window(payload: dict[str, Any]) -> str:
    days = int(payload.get("days", 1))
    end = datetime.fromisoformat(payload["window_end"])
    span = "last 24 h" if days == 1 else f"last {days} days"
    return f"{span} to {end:%Y-%m-%d %H:%M} UTC"


def _runs_line(w: dict[str, Any]) -> str:
    return (
        f"{w['started']} started · {w['succeeded']} succeeded · {w['failed']} failed · {w['rejected']} rejected · "
        f"{w['expired']} expired · {w['waiting']} waiting" + (f" · {w['cancelled']} cancelled" if w["cancelled"] else "")
    )


def _failures(w: dict[str, Any], esc: bool) -> str:
    steps = w.get("top_failed_steps") or []
    if not steps:
        return "none"
    name = escape_mrkdwn if esc else str
    return ", ".join(f"{name(s['step'])} ×{s['count']}" for s in steps)


def _checkpoints_line(w: dict[str, Any]) -> str:
    parts = [f"{w['approved']} approved", f"{w['edited']} edited", f"{w['checkpoint_rejected']} rejected",
             f"{w['checkpoint_expired']} expired"]
    if w.get("escalations_held"):
        parts.append(f"{w['escalations_held']} held")
    if w.get("revisions"):
        parts.append(f"{w['revisions']} revised")
    return " · ".join(parts)


def _alone_rows(w: dict[str, Any], esc: bool) -> list[tuple[str, str]]:
    """How far the agents got alone, as (label, value) rows; the rows with nothing to tell are left out."""
    name = escape_mrkdwn if esc else str
    rows = []
    figures = ("mttr_run_s", "mttr_retry_s", "cost_per_approved_usd", "untouched_share_14d")
    if any(w.get(k) is not None for k in figures):
        rows.append(("alone", (
            f"recovery {duration(w.get('mttr_run_s'))} to the next good run · {duration(w.get('mttr_retry_s'))} by retry · "
            f"{money_short(w.get('cost_per_approved_usd'))} per approved output · "
            f"{pct(w.get('untouched_share_14d'))} approved untouched (14 days)"
        )))
    if w.get("top_reject_reasons"):
        rows.append(("rejects", ", ".join(f"{name(r['reason'])} ×{r['count']}" for r in w["top_reject_reasons"])))
    if w.get("revisions"):
        per = ", ".join(f"{name(s['step'])} ×{s['count']}" for s in w.get("revisions_by_checkpoint") or [])
        rows.append(("revisions", f"{w['revisions']} ({pct(w.get('revision_rate'))} of decisions) · {per}"))
    if w.get("median_decision_by_approver"):
        rows.append(("approvers", " · ".join(
            f"{name(a['approver'])} {duration(a['median_s'])} ({a['decisions']})" for a in w["median_decision_by_approver"]
        )))
    return rows


# --- plain text ----------------------------------------------------------------------------------


def digest_text(payload: dict[str, Any]) -> str:
    """The digest as aligned plain text (for `overseer digest --print`)."""
    workflows = payload.get("workflows") or []
    lines = [f"Overseer digest · {_window(payload)}", ""]
    if not workflows:
        lines.append("No workflow ran in this window.")
        return "\n".join(lines) + "\n"
    label = 12
    for w in [*workflows, *([payload["totals"]] if len(workflows) > 1 and payload.get("totals") else [])]:
        rows = [
            ("runs", _runs_line(w)),
            ("success", f"{pct(w['success_rate'])}  ({change(w['success_rate_change'])} vs the 7 days before)"),
            ("14 days", f"{sparkline(w['daily_success_rate'])}  (oldest → today)"),
            ("failures", f"{_failures(w, esc=False)} · {w['retries']} retries · {w['retry_exhaustions']} retries ran out"),
            ("checkpoints", _checkpoints_line(w)),
            ("decisions", f"edit rate {pct_fine(w['edit_rate'])} · median wait {duration(w['median_decision_s'])}"),
            ("cost", f"{money_short(w['cost_usd'])} total · {money_short(w['cost_per_success_usd'])} per successful run"),
            ("duration", f"p50 {duration(w['duration_p50_s'])} · p95 {duration(w['duration_p95_s'])}"),
            *_alone_rows(w, esc=False),
        ]
        title = w["workflow"] if w is not payload.get("totals") else "All workflows"
        lines.append(title)
        lines.extend(f"  {k:<{label}}{v}" for k, v in rows)
        lines.append("")
    return "\n".join(lines)


# --- Block Kit -----------------------------------------------------------------------------------


def _section(text: str, fields: list[str] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": cut_escaped(text, SECTION_TEXT)}}
    if fields:
        block["fields"] = [{"type": "mrkdwn", "text": cut_escaped(f, FIELD_TEXT)} for f in fields[:SECTION_FIELDS]]
    return block


def _context(*texts: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": cut_escaped(t, SECTION_TEXT)} for t in texts[:CONTEXT_ELEMENTS]],
    }


def _workflow_blocks(w: dict[str, Any]) -> list[dict[str, Any]]:
    name = escape_mrkdwn(w["workflow"])
    fields = [
        f"*Runs*\n{_runs_line(w)}",
        f"*Success rate*\n{pct(w['success_rate'])} ({change(w['success_rate_change'])} vs the 7 days before)",
        f"*Failed most*\n{_failures(w, esc=True)}",
        f"*Retries*\n{w['retries']} spent · {w['retry_exhaustions']} ran out",
        f"*Checkpoints*\n{_checkpoints_line(w)}",
        f"*Edit rate · median wait*\n{pct_fine(w['edit_rate'])} · {duration(w['median_decision_s'])}",
        f"*Cost*\n{money_short(w['cost_usd'])} total · {money_short(w['cost_per_success_usd'])} per success",
        f"*Duration*\np50 {duration(w['duration_p50_s'])} · p95 {duration(w['duration_p95_s'])}",
    ]
    return [
        _section(f"*{name}*", fields),
        _context(f"14 days `{sparkline(w['daily_success_rate'])}` oldest → today",
                 *(f"*{label.capitalize()}*: {value}" for label, value in _alone_rows(w, esc=True))),
    ]


def _summary(w: dict[str, Any]) -> str:
    return (
        f"{w['started']} runs started · {w['succeeded']} succeeded · {w['failed']} failed · "
        f"success {pct(w['success_rate'])} ({change(w['success_rate_change'])}) · cost {money_short(w['cost_usd'])}"
    )


def digest_message(payload: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) for chat.postMessage; within Slack's limits whatever the payload holds."""
    workflows = list(payload.get("workflows") or [])
    totals = payload.get("totals")
    blocks: list[dict[str, Any]] = [header(f"Overseer digest · {_window(payload)}")]
    if totals and workflows:
        blocks.append(_context(escape_mrkdwn(_summary(totals))))
    if not workflows:
        blocks.append(_section("No workflow ran in this window."))
        return f"Overseer digest ({_window(payload)}): nothing ran.", blocks

    per = 2  # blocks per workflow
    room = MAX_BLOCKS - len(blocks)
    if len(workflows) * per <= room:
        shown, rest = workflows, []
    else:
        keep = (room - 1) // per  # one block left for the rest
        ranked = sorted(range(len(workflows)), key=lambda i: (-WorkflowDigest.activity(workflows[i]), i))
        chosen = set(ranked[:keep])
        shown = [w for i, w in enumerate(workflows) if i in chosen]
        rest = [w for i, w in enumerate(workflows) if i not in chosen]
    for w in shown:
        blocks.extend(_workflow_blocks(w))
    if rest:
        lines = [f"*{len(rest)} more workflows*"]
        for w in sorted(rest, key=lambda w: -WorkflowDigest.activity(w)):
            lines.append(f"• {escape_mrkdwn(w['workflow'])}: {w['started']} started, success {pct(w['success_rate'])}")
        text = "\n".join(lines)
        if len(text) > SECTION_TEXT:
            text = text[: SECTION_TEXT - 2].rsplit("\n", 1)[0] + "\n…"
        blocks.append(_section(text))
    fallback = f"Overseer digest ({_window(payload)}): {escape_mrkdwn(_summary(totals))}" if totals else "Overseer digest"
    return fallback, blocks

