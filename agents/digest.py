"""The digest: how each workflow did over a window, from SQL aggregates (storage.digest_queries).

Definitions (the window is [now - days, now), half-open, UTC). Runs started by `overseer profile` or by
an eval (triggers `profile`, `eval`) are left out of every figure: they are tests of a spec, not the team's work.

- started: runs created in the window.
- succeeded / failed / rejected / expired / cancelled: runs that *finished* in the window, by final
  status (a run that failed, was retried and then succeeded counts once, as succeeded).
- waiting: runs waiting at a checkpoint at the time of the query (not bounded by the window).
- success rate: succeeded / (succeeded + failed + rejected + expired) over runs finished in the
  window. Cancelled runs are left out (a person stopped them; they say nothing of the agent).
  None when no run finished. `success_rate_change` is that rate minus the same rate over the 7 days
  before the window (a fraction: 0.05 is "+5 points"); None if either side is undefined.
- daily_success_rate: 14 values, oldest first, the success rate of each 24-hour slice ending at
  `now` (slice 13 is the last 24 hours); None for a slice in which no run finished.
- top_failed_steps: the 3 steps most often the cause of a run that finished failed in the window.
- retries: attempts made in the window beyond the first of their step (attempt number > 1,
  fallback models included). retry_exhaustions: steps of runs that finished failed in the window
  after more than one attempt, the last of which failed with a transient error (the retries ran out).
- checkpoints: decisions taken in the window, by action: approved (as is), edited, rejected,
  expired (by a deadline). escalations_held: checkpoints escalated with on_timeout: hold.
- edit rate: sum(chars_changed) / sum(chars_total) over approved and edited decisions: the share of
  the agent's checkpointed output that humans rewrote (0 = taken as is). None without such decisions.
- median_decision_s: median of Decision.wait_s over human decisions (approve, edit, reject; not
  expire) taken in the window.
- cost_usd: the cost of the attempts made in the window; cost_per_success_usd = cost_usd / succeeded
  (what one success cost, failures included). None when nothing succeeded.
- duration_p50_s / p95_s: wall-clock seconds from started_at to finished_at (checkpoint waits
  included) of runs finished in the window; linear interpolation between ranks (as percentile_cont).

How far the agents get alone:
- mttr_run_s: mean seconds from a failed run to the next successful run of the workflow. Finishes are
  the run-finished announcements made in the window (a retried run finishes more than once); a failure
  after a success (or the window's start) opens an outage, later failures belong to it, the next
  success closes it. Outages still open at `now` are left out. None without a closed outage.
- mttr_retry_s: mean seconds from a run's failure to the success of the same run after a retry (from
  its first failure in the window, if it failed more than once). None without such a run.
- cost_per_approved_usd: cost_usd / (approved + edited): what one output a person let through cost.
- top_reject_reasons: the 3 most common reasons given with a rejection in the window, grouped by
  normalized text (lower case, whitespace collapsed, trailing punctuation dropped); ties by text.
  Rejections without a reason are not counted.
- median_decision_by_approver: per person, the median Decision.wait_s of their human decisions in the
  window (as median_decision_s), with how many they took; by approver id.
- untouched_share_14d: approved as is / human decisions (approve, edit, reject) taken in the 14 days
  before `now`, whatever the window. None without decisions.
- revisions: checkpoint versions sent back with a note (Revise) in the window; revisions_by_checkpoint
  the 3 checkpoints (steps; "workflow/step" in the totals) sent back most; revision_rate: revisions /
  human decisions (approve, edit, reject) taken in the window. None without decisions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from agents.errors import TransientError
from agents.outbox import RunFinished
from storage import digest_queries as dq
from storage.digest_queries import percentile
from storage.db import Database
from storage.status import FINISHED_RUN, Action, RunStatus

SERIES_DAYS = 14
PREVIOUS_DAYS = 7
TOP_STEPS = 3
MAX_DAYS = 365  # one UNION ALL branch per day: SQLite allows 500
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.REJECTED, RunStatus.EXPIRED)  # the denominator of the success rate
HUMAN_ACTIONS = (Action.APPROVE, Action.EDIT, Action.REJECT)
# Runs that say nothing of how the agents do for the team: `overseer profile` samples (bot/cli_profile.py)
# and the throwaway runs of evals (agents/evals.py).
UNCOUNTED_TRIGGERS = ("profile", "eval")


def transient_error_types() -> tuple[str, ...]:
    """Names of the error classes recorded for attempts that were worth retrying."""
    found: list[type] = [TransientError]
    i = 0
    while i < len(found):
        found.extend(c for c in found[i].__subclasses__() if c not in found)
        i += 1
    return tuple(sorted(c.__name__ for c in found))


@dataclass
class StepCount:
    step: str
    count: int


@dataclass
class ReasonCount:
    reason: str
    count: int


@dataclass
class ApproverWait:
    approver: str
    median_s: float
    decisions: int


@dataclass
class WorkflowDigest:
    """One workflow's numbers over the window (see the module docstring for definitions)."""

    workflow: str
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    expired: int = 0
    cancelled: int = 0
    waiting: int = 0
    success_rate: float | None = None
    success_rate_previous: float | None = None
    success_rate_change: float | None = None
    top_failed_steps: list[StepCount] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0
    retry_exhaustions: int = 0
    approved: int = 0
    edited: int = 0
    checkpoint_rejected: int = 0
    checkpoint_expired: int = 0
    escalations_held: int = 0
    edit_rate: float | None = None
    median_decision_s: float | None = None
    cost_usd: float = 0.0
    cost_per_success_usd: float | None = None
    duration_p50_s: float | None = None
    duration_p95_s: float | None = None
    daily_success_rate: list[float | None] = field(default_factory=lambda: [None] * SERIES_DAYS)
    mttr_run_s: float | None = None
    mttr_retry_s: float | None = None
    cost_per_approved_usd: float | None = None
    top_reject_reasons: list[ReasonCount] = field(default_factory=list)
    median_decision_by_approver: list[ApproverWait] = field(default_factory=list)
    untouched_share_14d: float | None = None
    revisions: int = 0
    revision_rate: float | None = None
    revisions_by_checkpoint: list[StepCount] = field(default_factory=list)

    @staticmethod
    def activity(payload: dict[str, Any]) -> int:
        """A workflow's rough size in a payload (runs started, finished, waiting): renderers show the
        busiest first when space is short."""
        finished = FINISHED_RUN
        return sum(int(payload.get(k, 0)) for k in ("started", "waiting", *finished))

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> WorkflowDigest:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["top_failed_steps"] = [StepCount(**s) for s in data.get("top_failed_steps", [])]
        values["daily_success_rate"] = list(data.get("daily_success_rate", [None] * SERIES_DAYS))
        values["top_reject_reasons"] = [ReasonCount(**r) for r in data.get("top_reject_reasons", [])]
        values["median_decision_by_approver"] = [ApproverWait(**a) for a in data.get("median_decision_by_approver", [])]
        values["revisions_by_checkpoint"] = [StepCount(**s) for s in data.get("revisions_by_checkpoint", [])]
        return cls(**values)


@dataclass
class Digest:
    """Every workflow's numbers over [window_start, window_end), plus the totals across them."""

    window_start: datetime
    window_end: datetime
    days: int
    workflows: list[WorkflowDigest]
    totals: WorkflowDigest

    def to_payload(self) -> dict[str, Any]:
        """Plain JSON: what the outbox stores and the renderers read."""
        return {
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "days": self.days,
            "workflows": [asdict(w) for w in self.workflows],
            "totals": asdict(self.totals),
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Digest:
        return cls(
            window_start=datetime.fromisoformat(data["window_start"]),
            window_end=datetime.fromisoformat(data["window_end"]),
            days=int(data["days"]),
            workflows=[WorkflowDigest.from_payload(w) for w in data.get("workflows", [])],
            totals=WorkflowDigest.from_payload(data.get("totals") or {"workflow": "all"}),
        )


def _rate(succeeded: int, finished: int) -> float | None:
    return succeeded / finished if finished else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def normalized_reason(reason: str) -> str:
    """A reject reason as grouped: lower case, whitespace collapsed, trailing punctuation dropped."""
    return " ".join(reason.lower().split()).rstrip(" .!?;:,")


def recoveries(finishes: Iterable[tuple[str, datetime, str]]) -> tuple[list[float], list[float]]:
    """(seconds from each outage's first failure to the next success of the workflow, seconds from a
    run's first failure to its own later success) from one workflow's (run id, when, status), oldest first."""
    outage: datetime | None = None
    failed_at: dict[str, datetime] = {}
    runs: list[float] = []
    retries: list[float] = []
    for run_id, at, status in finishes:
        if status == RunStatus.FAILED:
            outage = outage or at
            failed_at.setdefault(run_id, at)
        elif status == RunStatus.SUCCEEDED:
            if outage is not None:
                runs.append((at - outage).total_seconds())
                outage = None
            if run_id in failed_at:
                retries.append((at - failed_at.pop(run_id)).total_seconds())
    return runs, retries


class _Raw:
    """Everything fetched for one workflow, before the ratios are taken."""

    def __init__(self) -> None:
        self.started = 0
        self.waiting = 0
        self.status: dict[str, int] = defaultdict(int)  # in the window
        self.prev_succeeded = 0
        self.prev_finished = 0
        self.day_succeeded = [0] * SERIES_DAYS
        self.day_finished = [0] * SERIES_DAYS
        self.failed_steps: dict[str, int] = defaultdict(int)
        self.attempts = self.retries = self.exhaustions = 0
        self.cost = 0.0
        self.actions: dict[str, int] = defaultdict(int)
        self.chars_changed = self.chars_total = 0
        self.waits: list[float] = []
        self.durations: list[float | None] = [None, None]  # p50, p95 (the database's)
        self.held = 0
        self.finishes: list[tuple[str, datetime, str]] = []
        self.recovered: list[float] = []
        self.retried: list[float] = []
        self.reasons: dict[str, int] = defaultdict(int)
        self.approver_waits: dict[str, list[float]] = defaultdict(list)
        self.untouched = self.decided_14d = 0
        self.revised: dict[tuple[str, str], int] = defaultdict(int)  # (workflow, checkpoint step) -> revisions

    def merge(self, other: _Raw) -> None:
        self.started += other.started
        self.waiting += other.waiting
        for k, v in other.status.items():
            self.status[k] += v
        self.prev_succeeded += other.prev_succeeded
        self.prev_finished += other.prev_finished
        for i in range(SERIES_DAYS):
            self.day_succeeded[i] += other.day_succeeded[i]
            self.day_finished[i] += other.day_finished[i]
        for k, v in other.failed_steps.items():
            self.failed_steps[k] += v
        self.attempts += other.attempts
        self.retries += other.retries
        self.exhaustions += other.exhaustions
        self.cost += other.cost
        for k, v in other.actions.items():
            self.actions[k] += v
        self.chars_changed += other.chars_changed
        self.chars_total += other.chars_total
        self.waits.extend(other.waits)
        self.held += other.held
        self.recovered.extend(other.recovered)
        self.retried.extend(other.retried)
        for k, v in other.reasons.items():
            self.reasons[k] += v
        for k, waits in other.approver_waits.items():
            self.approver_waits[k].extend(waits)
        self.untouched += other.untouched
        self.decided_14d += other.decided_14d
        for k, v in other.revised.items():
            self.revised[k] += v

    def _revisions(self) -> dict[str, Any]:
        """The revision figures: per checkpoint (named by step alone within one workflow)."""
        alone = len({wf for wf, _ in self.revised}) <= 1
        named = sorted(((step if alone else f"{wf}/{step}", n) for (wf, step), n in self.revised.items()),
                       key=lambda kv: (-kv[1], kv[0]))
        total = sum(self.revised.values())
        humans = sum(self.actions[a] for a in HUMAN_ACTIONS)
        return {"revisions": total, "revision_rate": total / humans if humans else None,
                "revisions_by_checkpoint": [StepCount(k, v) for k, v in named[:TOP_STEPS]]}

    def digest(self, workflow: str) -> WorkflowDigest:
        s = self.status
        finished = sum(s[k] for k in FINISHED)
        rate = _rate(s["succeeded"], finished)
        prev = _rate(self.prev_succeeded, self.prev_finished)
        steps = sorted(self.failed_steps.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_STEPS]
        reasons = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_STEPS]
        let_through = self.actions[Action.APPROVE] + self.actions[Action.EDIT]
        return WorkflowDigest(
            workflow=workflow, started=self.started, succeeded=s["succeeded"], failed=s["failed"],
            rejected=s["rejected"], expired=s["expired"], cancelled=s["cancelled"], waiting=self.waiting,
            success_rate=rate, success_rate_previous=prev,
            success_rate_change=(rate - prev) if rate is not None and prev is not None else None,
            top_failed_steps=[StepCount(k, v) for k, v in steps],
            attempts=self.attempts, retries=self.retries, retry_exhaustions=self.exhaustions,
            approved=self.actions[Action.APPROVE], edited=self.actions[Action.EDIT],
            checkpoint_rejected=self.actions[Action.REJECT], checkpoint_expired=self.actions[Action.EXPIRE],
            escalations_held=self.held,
            edit_rate=self.chars_changed / self.chars_total if self.chars_total else None,
            median_decision_s=percentile(sorted(self.waits), 0.5),
            cost_usd=round(self.cost, 10),
            cost_per_success_usd=round(self.cost / s["succeeded"], 10) if s["succeeded"] else None,
            duration_p50_s=self.durations[0], duration_p95_s=self.durations[1],
            daily_success_rate=[
                _rate(self.day_succeeded[i], self.day_finished[i]) for i in range(SERIES_DAYS)
            ],
            mttr_run_s=_mean(self.recovered), mttr_retry_s=_mean(self.retried),
            cost_per_approved_usd=round(self.cost / let_through, 10) if let_through else None,
            top_reject_reasons=[ReasonCount(k, v) for k, v in reasons],
            median_decision_by_approver=[
                ApproverWait(k, percentile(sorted(w), 0.5) or 0.0, len(w)) for k, w in sorted(self.approver_waits.items())
            ],
            untouched_share_14d=_rate(self.untouched, self.decided_14d),
            **self._revisions(),
        )


async def _alone(session: Any, raw: dict[str, _Raw], *, start: datetime, now: datetime) -> None:
    """Fill in how far the agents got alone: recoveries, reject reasons, checkpoints approved as is."""
    for wf, run_id, at, status in await dq.run_finishes(session=session, start=start, end=now, kind=RunFinished.kind, uncounted=UNCOUNTED_TRIGGERS):
        raw[wf].finishes.append((run_id, at, status))
    for r in raw.values():
        r.recovered, r.retried = recoveries(r.finishes)
    for wf, reason in await dq.reject_reasons(session=session, start=start, end=now, uncounted=UNCOUNTED_TRIGGERS):
        if normalized_reason(reason):
            raw[wf].reasons[normalized_reason(reason)] += 1
    for wf, action, n in await dq.decision_counts(
        session=session, start=now - timedelta(days=SERIES_DAYS), end=now, actions=HUMAN_ACTIONS, uncounted=UNCOUNTED_TRIGGERS
    ):
        raw[wf].decided_14d += n
        raw[wf].untouched += n if action == Action.APPROVE else 0


async def compute_digest(
    db: Database, *, now: datetime, days: int = 1, workflows: Iterable[str] = ()
) -> Digest:
    """The digest over [now - days, now); `workflows` are listed even when they did nothing."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    now = now.astimezone(timezone.utc)
    start = now - timedelta(days=days)
    raw: dict[str, _Raw] = defaultdict(_Raw)
    for name in workflows:
        raw[name]  # noqa: B018 - listed even when quiet
    buckets = max(SERIES_DAYS, days + PREVIOUS_DAYS)
    async with db.sessions() as session:
        for wf, n in await dq.runs_started(session=session, start=start, end=now, uncounted=UNCOUNTED_TRIGGERS):
            raw[wf].started = n
        for wf, n in await dq.runs_waiting(session=session, uncounted=UNCOUNTED_TRIGGERS):
            raw[wf].waiting = n
        for wf, status, bucket, n in await dq.runs_finished_by_day(
            session=session, end=now, buckets=buckets, statuses=FINISHED_RUN, uncounted=UNCOUNTED_TRIGGERS
        ):
            r = raw[wf]
            if bucket < days:
                r.status[status] += n
            elif bucket < days + PREVIOUS_DAYS and status in FINISHED:
                r.prev_finished += n
                r.prev_succeeded += n if status == RunStatus.SUCCEEDED else 0
            if bucket < SERIES_DAYS and status in FINISHED:
                i = SERIES_DAYS - 1 - bucket  # oldest first
                r.day_finished[i] += n
                r.day_succeeded[i] += n if status == RunStatus.SUCCEEDED else 0
        for wf, step, n in await dq.failed_steps(session=session, start=start, end=now, uncounted=UNCOUNTED_TRIGGERS):
            raw[wf].failed_steps[step] += n
        for wf, n in await dq.retry_exhaustions(
            session=session, start=start, end=now, transient_types=transient_error_types(), uncounted=UNCOUNTED_TRIGGERS
        ):
            raw[wf].exhaustions = n
        for wf, n, retries, cost in await dq.attempt_totals(session=session, start=start, end=now, uncounted=UNCOUNTED_TRIGGERS):
            raw[wf].attempts, raw[wf].retries, raw[wf].cost = n, retries, cost
        for wf, action, n, changed, total in await dq.decision_totals(session=session, start=start, end=now, uncounted=UNCOUNTED_TRIGGERS):
            raw[wf].actions[action] += n
            if action in (Action.APPROVE, Action.EDIT):
                raw[wf].chars_changed += changed
                raw[wf].chars_total += total
        for wf, by, wait in await dq.decision_waits(
            session=session, start=start, end=now, actions=HUMAN_ACTIONS, uncounted=UNCOUNTED_TRIGGERS
        ):
            raw[wf].waits.append(wait)
            raw[wf].approver_waits[by].append(wait)
        await _alone(session, raw, start=start, now=now)
        durations = await dq.duration_percentiles(
            session=session, start=start, end=now, quantiles=(0.5, 0.95), uncounted=UNCOUNTED_TRIGGERS
        )
        for wf, n in await dq.escalations(session=session, start=start, end=now, uncounted=UNCOUNTED_TRIGGERS):
            raw[wf].held = n
        for wf, step, n in await dq.revisions_per_checkpoint(session=session, start=start, end=now):
            raw[wf].revised[(wf, step)] += n
    total = _Raw()
    for r in raw.values():
        total.merge(r)
    for wf, found in durations.items():
        (total if wf is None else raw[wf]).durations = found
    return Digest(
        window_start=start, window_end=now, days=days,
        workflows=[raw[name].digest(name) for name in sorted(raw)],
        totals=total.digest("all workflows"),
    )
