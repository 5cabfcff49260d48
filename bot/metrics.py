"""GET /metrics for Prometheus: the database's aggregates, refreshed in the background, and ack latency.

Most numbers are read from the database (storage/metrics_queries.py) by a refresh task, not counted in
memory: they survive restarts, every replica reports the same, and agents/ holds no metrics code. A scrape
serves the last snapshot (refreshing it first when it is older than the refresh interval). Only what the
process alone sees is counted here: how long Slack's requests to /slack/events take to answer.

The route carries no Slack signature: keep it off the public internet, or set OVERSEER_METRICS_TOKEN and
scrape with `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Iterable, Sequence

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage import metrics_queries
from storage.db import Database
from storage.metrics_queries import Snapshot
from storage.models import utcnow

log = structlog.get_logger("overseer.metrics")

ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)  # Slack gives 3 s


class DatabaseCollector(Collector):
    """Turns the last database snapshot into metric families at scrape time."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        yield _gauge("overseer_runs", "Runs recorded, by workflow and current status.", ["workflow", "status"], snap.runs)
        yield _counter("overseer_attempts", "Model and tool calls, by outcome and error type.", ["status", "error_type"], snap.attempts)
        yield _counter("overseer_tokens", "Tokens used, by model asked and direction.", ["model", "direction"],
                       [(u.model, d, n) for u in snap.usage for d, n in (("input", u.tokens_in), ("output", u.tokens_out))])
        yield _counter("overseer_cost_usd", "Model cost in US dollars, by model asked.", ["model"],
                       [(u.model, u.cost_usd) for u in snap.usage])
        yield _gauge("overseer_checkpoints_pending", "Checkpoints awaiting a decision, by workflow.", ["workflow"],
                     snap.pending_checkpoints)
        yield _gauge("overseer_outbox_backlog", "Undelivered outbox messages.", [], [(snap.outbox_backlog,)])
        yield _gauge("overseer_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox message (0 when none).",
                     [], [(snap.outbox_oldest_s,)])
        yield _histogram("overseer_run_duration_seconds", "Finished runs, started to finished (human waits included).",
                         ["workflow", "status"], metrics_queries.RUN_BUCKETS, snap.run_seconds)
        yield _histogram("overseer_step_duration_seconds", "Finished steps, started to finished.",
                         ["workflow", "step"], metrics_queries.STEP_BUCKETS, snap.step_seconds)
        yield _histogram("overseer_decision_wait_seconds", "How long checkpoints waited for their decision.",
                         ["workflow", "action"], metrics_queries.DECISION_BUCKETS, snap.decision_seconds)
        yield _gauge("overseer_metrics_snapshot_age_seconds", "How old the database numbers above are.", [],
                     [((utcnow() - snap.at).total_seconds(),)])


def _gauge(name: str, doc: str, labels: list[str], rows: Iterable[Sequence[object]]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for *values, number in rows:
        family.add_metric([str(v) for v in values], float(number))  # type: ignore[arg-type]
    return family


def _counter(name: str, doc: str, labels: list[str], rows: Iterable[Sequence[object]]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for *values, number in rows:
        family.add_metric([str(v) for v in values], float(number))  # type: ignore[arg-type]
    return family


def _histogram(name: str, doc: str, labels: list[str], bounds: Sequence[float],
               series: Iterable[metrics_queries.Histogram]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for h in series:
        buckets = [(str(bound), float(n)) for bound, n in zip(bounds, h.cumulative)] + [("+Inf", float(h.count))]
        family.add_metric(list(h.labels), buckets, h.total)
    return family


class Metrics:
    """A registry of its own (one per app, so tests can run many), the database collector and ack latency."""

    def __init__(self, db: Database, *, refresh_seconds: float = 15.0, token: str | None = None) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self.token = token or None
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = DatabaseCollector()
        self.registry.register(self.collector)
        self.ack_seconds = Histogram("overseer_slack_ack_seconds", "Time to answer a request on /slack/events.",
                                     buckets=ACK_BUCKETS, registry=self.registry)
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read a new snapshot from the database (on failure the old one stays, and its age shows it)."""
        async with self._lock:
            try:
                async with self.db.sessions() as session:
                    self.collector.snapshot = await metrics_queries.snapshot(session=session, now=utcnow())
            except Exception as exc:  # noqa: BLE001 - a metrics read must never take the bot down
                log.warning("metrics.refresh_failed", error=f"{type(exc).__name__}: {exc}")

    def stale(self) -> bool:
        """Whether the snapshot is missing or older than the refresh interval."""
        snap = self.collector.snapshot
        return snap is None or (utcnow() - snap.at).total_seconds() >= self.refresh_seconds

    async def refresh_forever(self) -> None:
        """The refresh task: a new snapshot every refresh interval, until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(max(self.refresh_seconds, 1.0))

    @contextlib.asynccontextmanager
    async def refreshing(self) -> AsyncIterator[None]:
        """Run the refresh task for the duration of the block."""
        task = asyncio.create_task(self.refresh_forever(), name="overseer:metrics")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics in Prometheus's text format."""
        if self.token and not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {self.token}"):
            return PlainTextResponse("a bearer token is required\n", status_code=401)
        if self.stale():
            await self.refresh()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def middleware(self) -> Middleware:
        """The ack-latency middleware, for Starlette(middleware=[...])."""
        return Middleware(AckLatency, histogram=self.ack_seconds)


class AckLatency:
    """ASGI middleware: observe how long /slack/events takes to send its whole response."""

    def __init__(self, app: ASGIApp, histogram: Histogram, path: str = "/slack/events") -> None:
        self.app = app
        self.histogram = histogram
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.histogram.observe(time.perf_counter() - started)

        await self.app(scope, receive, timed)

