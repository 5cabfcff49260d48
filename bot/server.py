"""`overseer serve`: one asyncio loop runs Bolt, the engine's runs, the outbox dispatcher and any extra tasks.

    Services          everything the bot runs, built once (tests build it with fakes' addresses)
    create_asgi_app   the Starlette app: GET /healthz, GET /runs and /runs/{id} (bot/pages, signed links), and in
                      HTTP mode POST /slack/events (bot.slack.endpoint, then Bolt); its lifespan starts and stops
                      the Services' background tasks
    tasks             `async def task(services) -> None` factories run alongside the runner and the
                      dispatcher; serve runs the scheduler (schedules, the digest, deadlines) this way
    serve(settings)   migrations, Database, Engine, Runner, Dispatcher, Scheduler, then uvicorn (HTTP
                      mode) or Socket Mode when SLACK_APP_TOKEN is set (only /healthz is served over HTTP then);
                      SIGTERM or SIGINT stops it within seconds, leases and claims released
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agents.engine import Engine, EngineSettings
from agents.errors import DatabaseUnavailable
from agents.runner import Runner
from agents.loading import load_workflows
from agents.spec import WorkflowSpec
from bot.health import STUCK_BACKLOG_SECONDS, Health
from bot.metrics import Metrics
from bot.pages.links import links_from
from bot import redaction
from bot.pages.routes import page_routes
from bot.settings import Settings, secrets_from_env
from bot.slack import BotContext
from bot.slack.app import build_app, build_client, socket_mode_handler
from bot.slack.directory import Directory
from bot.slack.dispatcher import Dispatcher, DispatcherSettings
from bot.slack.endpoint import EventsEndpoint
from storage import driver_queries
from storage.db import Database, connect
from storage.migrate import upgrade

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

log = structlog.get_logger("overseer.server")

TaskFactory = Callable[["Services"], Awaitable[None]]



@dataclass
class Services:
    """Everything the bot runs; `start` launches the background tasks, `stop` ends them."""

    db: Database
    engine: Engine
    runner: Runner
    dispatcher: Dispatcher
    client: AsyncWebClient
    app: AsyncApp
    specs: dict[str, WorkflowSpec]
    directory: Directory
    context: BotContext
    endpoint: EventsEndpoint | None = None  # HTTP mode only: Socket Mode serves no Slack route over HTTP
    socket: AsyncSocketModeHandler | None = None  # Socket Mode, once serve has set it up
    settings: Settings | None = None
    socket_connected: Callable[[], Awaitable[bool]] | None = None  # Socket Mode's connection check; /healthz asks it
    extra_tasks: list[TaskFactory] = field(default_factory=list)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self.runner.run_forever(), name="overseer:runner"),
            asyncio.create_task(self.dispatcher.run_forever(), name="overseer:dispatcher"),
            *(asyncio.create_task(factory(self), name=f"overseer:extra:{i}") for i, factory in enumerate(self.extra_tasks)),
        ]
        self.runner.kick()
        self.dispatcher.kick()
        log.info("services.started", workflows=sorted(self.specs), extra_tasks=len(self.extra_tasks))

    async def stop(self, grace: float = 1.5) -> None:
        """End the background work within about `grace` seconds and one more: acked requests and the
        deliveries under way may finish meanwhile; runs are cancelled and their leases released; the
        dispatcher's claims are given back."""
        await asyncio.gather(self.context.settle(grace), self.dispatcher.stop(grace), self.runner.stop(grace))
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 1.0)
        self._tasks = []
        log.info("services.stopped")

    async def warm_up(self) -> None:
        """Pay the model library's first-use costs before serving (best effort, no network).

        Its import and its first call load hundreds of modules and block the loop for seconds: done
        while requests arrive, that would stall every ack (Slack gives 3 s) as the first run starts.
        """
        started = asyncio.get_running_loop().time()
        try:
            from agents.model_call import warm_up

            await warm_up()
        except Exception as exc:  # noqa: BLE001 - only a warm-up
            log.warning("serve.warm_up_failed", error=f"{type(exc).__name__}: {exc}")
        freeze_heap()
        log.info("serve.warmed_up", seconds=round(asyncio.get_running_loop().time() - started, 2))

    async def healthy(self, timeout: float = 3.0) -> bool:
        """Whether the database answers."""
        try:
            async with asyncio.timeout(timeout):
                async with self.db.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
            log.warning("health.database_unavailable", error=f"{type(exc).__name__}: {exc}")
            return False


# Young collections every 50,000 allocations instead of 700, full ones rarer: with the heap frozen they
# walk only what serving allocates, and a short-lived request's objects mostly die by reference count first.
GC_THRESHOLDS = (50_000, 20, 100)


def freeze_heap() -> None:
    """Move everything alive now (litellm's ~443k objects among it) out of the collector's sight, and
    collect less often: a full collection over that heap stalled the loop for 280-400 ms, past acks."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run_scheduler(services: Services) -> None:
    """A task factory running bot.scheduler (schedules, the digest, checkpoint deadlines) until cancelled."""
    from bot.scheduler import Scheduler

    settings = services.settings
    scheduler = Scheduler(
        db=services.db, engine=services.engine, runner=services.runner, specs=services.specs,
        digest_cron=settings.digest_cron if settings else "0 9 * * *", digest_tz=settings.digest_tz if settings else "UTC",
        digest_channel=settings.digest_channel if settings else None,
        grace_seconds=settings.schedule_grace_seconds if settings else 3600.0, owner=services.engine.settings.owner,
    )
    await scheduler.start()
    try:
        await asyncio.Event().wait()  # until cancelled at shutdown
    finally:
        await scheduler.shutdown()


def build_services(
    *,
    db: Database,
    specs: dict[str, WorkflowSpec],
    bot_token: str,
    signing_secret: str | None,
    slack_api_url: str,
    command: str = "/overseer",
    engine_settings: EngineSettings | None = None,
    dispatcher_settings: DispatcherSettings | None = None,
    runner_poll_seconds: float = 2.0,
    max_runs: int = 64,
    slack_retry_interval: float | None = None,
    group_ttl: float = 60.0,
    socket_mode: bool = False,
    settings: Settings | None = None,
    tasks: list[TaskFactory] | None = None,
) -> Services:
    """Wire the pieces from plain values (serve passes configuration; tests pass the fakes' addresses)."""
    engine = Engine(db, settings=engine_settings)
    runner = Runner(engine, concurrency=max_runs, poll_seconds=runner_poll_seconds)
    client = build_client(bot_token, base_url=slack_api_url, retry_interval=slack_retry_interval)
    links = links_from(settings)
    dispatcher = Dispatcher(db, client, settings=dispatcher_settings, links=links)
    directory = Directory(client, ttl=group_ttl)
    context = BotContext(db=db, engine=engine, runner=runner, client=client, directory=directory, specs=specs,
                         command=command, kick_dispatcher=dispatcher.kick, links=links)
    app = build_app(context, signing_secret=signing_secret, socket_mode=socket_mode)
    endpoint = None if socket_mode else EventsEndpoint(app, str(signing_secret))
    return Services(db=db, engine=engine, runner=runner, dispatcher=dispatcher, client=client, app=app, specs=specs,
                    directory=directory, context=context, endpoint=endpoint, settings=settings,
                    extra_tasks=list(tasks or []))


def create_asgi_app(services: Services, *, manage_tasks: bool = True) -> Starlette:
    """GET /healthz, the run pages and, in HTTP mode, POST /slack/events (slash commands, interactivity); the lifespan runs the tasks."""
    settings = services.settings
    stuck_after_s = settings.health_backlog_seconds if settings else STUCK_BACKLOG_SECONDS
    token = settings.metrics_token.get_secret_value() if settings and settings.metrics_token else None
    metrics = Metrics(services.db, token=token,
                      **({"refresh_seconds": settings.metrics_refresh_seconds} if settings else {}))

    async def healthz(request: Request) -> Response:
        # Built per request: serve sets the Socket Mode check once the connection exists.
        health = Health(services.db, services.client, services.healthy, socket_connected=services.socket_connected,
                        stuck_after_s=stuck_after_s)
        report = await health.check()
        return JSONResponse({**report, "active_runs": len(services.runner.active)}, status_code=200 if report["ok"] else 503)


    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if manage_tasks:
            await services.start()
        try:
            async with metrics.refreshing() if manage_tasks else contextlib.nullcontext():
                yield
        finally:
            if manage_tasks:
                await services.stop()

    routes = [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics.endpoint, methods=["GET"]),
              *page_routes(services.db, links_from(services.settings), redact=redaction.redact)]
    if services.endpoint is not None:
        routes.append(Route("/slack/events", services.endpoint.handle, methods=["POST"]))
    return Starlette(routes=routes, middleware=[metrics.middleware()], lifespan=lifespan)


async def serve(settings: Settings, *, tasks: list[TaskFactory] | None = None) -> None:
    """Run the bot until stopped: HTTP under uvicorn, or Socket Mode when SLACK_APP_TOKEN is set."""
    from bot.serve_lock import single_sqlite_server

    settings.require_slack()
    with single_sqlite_server(settings.database_url):
        await _serve(settings, tasks=[run_scheduler] if tasks is None else tasks)


async def release_dead_leases(db: Database) -> list[str]:
    """Free the leases of processes on this host that died (kill -9, crash): their runs go on now,
    not when the lease lapses. Other hosts' leases lapse on their own."""
    from agents.lease import owner_process

    released = []
    async with db.sessions.begin() as session:
        for owner in await driver_queries.lease_owners(session=session):
            host_pid = owner_process(owner)
            if host_pid and host_pid[0] == socket.gethostname() and host_pid[1] != os.getpid() and not _alive(host_pid[1]):
                await driver_queries.release_leases(session=session, owner=owner)
                released.append(owner)
    if released:
        log.info("serve.released_dead_leases", owners=released)
    return released


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _http_server(config: Any) -> Any:
    """A uvicorn server that leaves the signals to `serve`: uvicorn's own handlers re-raise SIGTERM once
    it is done, which kills the process before the cleanup after it (leases, claims, the database)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    return Server(config)


@contextlib.contextmanager
def _stopped_by_signals(server: Any) -> Any:
    """SIGTERM or SIGINT ends `server` gracefully; a second SIGINT ends it at once."""
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        log.info("serve.stopping", signal=sig.name)
        server.force_exit = server.should_exit and sig == signal.SIGINT
        server.should_exit = True

    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            loop.add_signal_handler(sig, stop, sig)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _serve(settings: Settings, *, tasks: list[TaskFactory]) -> None:
    import uvicorn

    db = connect(settings.database_url)
    try:
        try:
            await upgrade(db)
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad credentials, unwritable file
            raise DatabaseUnavailable(f"DATABASE_URL: cannot migrate the database: {type(exc).__name__}: {exc}") from None
        await release_dead_leases(db)
        specs, problems = load_workflows(settings.workflows)
        redaction.install(specs.values())  # the environment's secrets and the API keys the specs name
        for problem in problems:
            log.warning("workflow.skipped", problem=problem)
        assert settings.slack_bot_token is not None  # require_slack checked it
        services = build_services(
            db=db, specs=specs, bot_token=settings.slack_bot_token.get_secret_value(),
            signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
            slack_api_url=settings.slack_api_url, command=settings.command, socket_mode=settings.socket_mode,
            engine_settings=EngineSettings(lease_seconds=settings.lease_seconds, delay_scale=settings.retry_delay_scale,
                                           secrets=secrets_from_env(), fetch_policy=settings.fetch_policy,
                                           mock=settings.mock),
            # A dead replica's claimed messages go out after twice its lease; a live one's deliveries
            # (Retry-After waits included) finish well within that.
            dispatcher_settings=DispatcherSettings(poll_seconds=settings.poll_seconds, claim_seconds=2 * settings.lease_seconds),
            runner_poll_seconds=settings.poll_seconds, max_runs=settings.max_runs, settings=settings, tasks=tasks,
        )
        if settings.socket_mode:
            assert settings.slack_app_token is not None
            services.socket = await socket_mode_handler(services.app, settings.slack_app_token.get_secret_value())
            services.socket_connected = services.socket.client.is_connected
        await services.warm_up()
        # Requests still open a second after a stop are cut: Slack's are acked within milliseconds.
        config = uvicorn.Config(create_asgi_app(services), host=settings.host, port=settings.port, log_level="warning",
                                access_log=False, lifespan="on", timeout_graceful_shutdown=1)
        server = _http_server(config)
        log.info("serve.starting", mode="socket" if settings.socket_mode else "http", host=settings.host,
                 port=settings.port, workflows=sorted(specs))
        with _stopped_by_signals(server):  # from here on, until everything below is done
            http = asyncio.create_task(server.serve(), name="overseer:http")  # /healthz also in Socket Mode
            try:
                if services.socket is not None:
                    await services.socket.connect_async()  # retries until connected; /healthz says 503 meanwhile
                await asyncio.shield(http)
            finally:
                # Stopped by a signal (uvicorn ends by itself) or cancelled: shut down cleanly either way,
                # so acked work finishes and the lifespan stops the runner and the dispatcher.
                server.should_exit = True
                if services.socket is not None:
                    with contextlib.suppress(Exception):
                        await services.socket.close_async()
                with contextlib.suppress(Exception):
                    await http
    finally:
        await db.dispose()
        log.info("serve.stopped")
