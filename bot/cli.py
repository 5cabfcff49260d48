"""The `overseer` command. Heavy imports (litellm, Slack) happen inside commands, so --help is fast."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, TextIO

from agents.errors import ConfigError, DatabaseUnavailable, OverseerError, UnknownWorkflow, UserInputError
from bot.settings import Settings, load_settings
from storage.status import RunStatus

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_WAITING = 0, 1, 2, 3
_BAD_INPUT = (UserInputError, ConfigError, DatabaseUnavailable)  # the person can fix these: exit 2
_MOCK_HELP = "answer model steps from their output contracts (the step's example:), calling no provider and needing no key"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overseer", description="Run small, scoped AI agents under human supervision.",
        epilog="Settings come from the environment (DATABASE_URL, OVERSEER_WORKFLOWS, SLACK_BOT_TOKEN, ...); see README.",
    )
    parser.add_argument("--workflows", metavar="DIR", help="folder of workflow specs (env OVERSEER_WORKFLOWS, default ./workflows)")
    parser.add_argument("--database", metavar="URL", help="database URL (env DATABASE_URL, default sqlite:///overseer.db)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every event to stderr (default: warnings only)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check", help="validate and lint every workflow spec")
    p.add_argument("dir", nargs="?", help="folder of specs (default: --workflows)")
    p.add_argument("--strict", action="store_true", help="warnings are errors too (exit 2)")

    p = sub.add_parser("run", help="run a workflow here, answering checkpoints at the prompt")
    p.add_argument("workflow")
    p.add_argument("inputs", nargs="*", metavar="key=value")
    p.add_argument("--yes", "-y", action="store_true", help="approve every checkpoint")
    p.add_argument("--mock", action="store_true", help=_MOCK_HELP)
    p.add_argument("--output", choices=["text", "json"], default="text",
                   help="json: progress on stderr, then one JSON object on stdout (run_id, status, outputs)")

    p = sub.add_parser("resume", help="continue a run that was interrupted or waits at a checkpoint")
    p.add_argument("run_id")
    p.add_argument("--yes", "-y", action="store_true", help="approve every checkpoint")
    p.add_argument("--output", choices=["text", "json"], default="text", help="as for run")

    p = sub.add_parser("runs", help="list recorded runs, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--workflow")

    p = sub.add_parser("show", help="one run with every attempt")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--output", action="store_true", help="only the run's result: its published outputs (or the last step's)")

    p = sub.add_parser("db", help="database maintenance")
    p.add_argument("action", choices=["upgrade"])

    p = sub.add_parser("digest", help="how the agents did over the last days")
    p.add_argument("--print", action="store_true", dest="print_", help="print it here (the default)")
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("profile", help="cost-profile a workflow on sample inputs before deploying it")
    p.add_argument("workflow")
    p.add_argument("--inputs", required=True, metavar="FILE", help="JSON Lines: one object of inputs per line")
    p.add_argument("--model", action="append", default=[], metavar="ALT", help="also profile with every model step on ALT (repeatable)")
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="runs per sample (default 1)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("eval", help="re-run decided checkpoints under the current spec and score them against what people approved")
    p.add_argument("workflow")
    p.add_argument("--last", type=int, default=20, metavar="N", help="how many decided checkpoints (default 20)")
    p.add_argument("--spec", metavar="PATH", help="the spec file to evaluate (default: the workflow's current spec)")
    p.add_argument("--model", metavar="ALT", help="run the checkpointed steps on this model instead")
    p.add_argument("--min-agreement", type=float, metavar="X", help="exit 1 when the agreement (0..1) is below X")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("serve", help="run the Slack bot (HTTP, or Socket Mode when SLACK_APP_TOKEN is set)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--mock", action="store_true", help=_MOCK_HELP)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.workflows:
        overrides["workflows"] = Path(args.workflows)
    if args.database:
        overrides["database_url"] = args.database
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    if getattr(args, "mock", False):
        overrides["mock"] = True
    return load_settings(**overrides)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; `run`'s key=value inputs may also follow its options (run WF --mock k=v)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "run" and all("=" in e and not e.startswith("-") for e in extra):
        args.inputs = [*args.inputs, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run the command, translate errors into one line and an exit status.

    Everything it prints (results, progress, errors) goes through the process's redactor.
    """
    from bot import redaction
    from bot.settings import load_env_file

    load_env_file()  # before the redactor learns the environment's secrets: .env's are secrets too
    redaction.install()  # the environment's secrets, before anything can be printed
    with redirect_stdout(redaction.Redacting(sys.stdout)), redirect_stderr(redaction.Redacting(sys.stderr)):
        args = _parse(argv)
        if not args.command:
            _parser().print_help()
            return EXIT_BAD_INPUT
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        from bot.logs import configure_logging

        if args.command == "serve":
            configure_logging(fmt=settings.log_format, level=settings.log_level)
        else:  # the terminal is for the command's own output; logs go to stderr, warnings only unless -v
            from bot.cli_progress import BesideProgress
            from bot.logs import underneath

            configure_logging(fmt="console" if sys.stderr.isatty() else "json",
                              level="info" if args.verbose else "warning", stream=BesideProgress(underneath(sys.stderr)))
        _redact_spec_keys(settings)
        if args.command != "check":
            from bot.telemetry import configure_telemetry

            configure_telemetry(settings)
        return _COMMANDS[args.command](args, settings)
    except KeyboardInterrupt:
        print("overseer: interrupted", file=sys.stderr)
        return 130
    except OverseerError as exc:
        return _fail(exc)
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line, not a traceback
        if os.environ.get("OVERSEER_DEBUG"):
            raise
        print(f"overseer: internal error: {type(exc).__name__}: {exc} (set OVERSEER_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_FAILED


def _redact_spec_keys(settings: Settings) -> None:
    """Add the API keys the workflows name (`api_key_env`) to what is redacted: runs recorded their errors."""
    from agents.loading import load_workflows
    from bot import redaction

    redaction.install(load_workflows(settings.workflows)[0].values())


def _fail(exc: OverseerError) -> int:
    """The CLI's one translation of errors for people."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    for line in lines:
        print(f"overseer: {line}", file=sys.stderr)
    return EXIT_BAD_INPUT if isinstance(exc, _BAD_INPUT) else EXIT_FAILED


def _async(coro_fn: Callable[..., Coroutine[Any, Any, int]]) -> Callable[[argparse.Namespace, Settings], int]:
    def runner(args: argparse.Namespace, settings: Settings) -> int:
        return asyncio.run(coro_fn(args, settings))

    return runner


# --- commands ------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate every spec and lint it, in one pass: exit 0, or 2 with one line per problem (and per
    warning with --strict)."""
    from agents.loading import load_workflows

    folder = Path(args.dir) if args.dir else settings.workflows
    specs, problems = load_workflows(folder)
    for problem in problems:
        print(problem)
    if not specs and not problems:
        print(f"{folder}: no workflow specs (*.yaml) found")
        return EXIT_BAD_INPUT
    for name, spec in sorted(specs.items()):
        checkpoints = sum(1 for s in spec.steps if s.checkpoint)
        print(f"ok  {name}: {len(spec.steps)} steps, {checkpoints} checkpoint(s)")
    lints = _lint_warnings(specs) + _model_warnings(specs)  # the spec's own: --strict makes them errors
    unset = _credential_warnings(specs)  # this machine's environment: never an error
    for line in lints + unset:
        print(line)
    if problems or lints or unset:
        strict = " (--strict: the spec warnings fail the check)" if args.strict and lints else ""
        print(f"{len(problems)} error(s), {len(lints) + len(unset)} warning(s){strict}")
    return EXIT_BAD_INPUT if problems or (args.strict and lints) else EXIT_OK


def _lint_warnings(specs: dict[str, Any]) -> list[str]:
    """What the project's rules ask of a spec (agents.loading.lint_spec), one line each."""
    from agents.loading import lint_spec

    return [f"warning  {name}: {line}" for name, spec in sorted(specs.items()) for line in lint_spec(spec)]


def _model_warnings(specs: dict[str, Any]) -> list[str]:
    """One line per model name litellm does not know (misspelt, or unpriced: budget_usd cannot count it)."""
    from agents.model_call import known_model
    from agents.spec import ModelStep

    return [
        f"warning  {name}: step {step.name}: model {model!r} is unknown to litellm (misspelt? its price is unknown, "
        "so its cost counts as $0 against budget_usd)"
        for name, spec in sorted(specs.items()) for step in spec.steps if isinstance(step, ModelStep)
        for model in dict.fromkeys((step.model, *step.fallbacks)) if not known_model(model)
    ]


def _credential_warnings(specs: dict[str, Any]) -> list[str]:
    """One line per model whose API key is not set here (a warning: the specs are still valid)."""
    from agents.model_call import missing_keys
    from agents.spec import ModelStep

    lines = []
    for name, spec in sorted(specs.items()):
        for step in spec.steps:
            if not isinstance(step, ModelStep):
                continue
            key = os.environ.get(step.api_key_env) if step.api_key_env else None
            for model in (step.model, *step.fallbacks):
                unset = [f"{step.api_key_env} (its api_key_env)"] if step.api_key_env and key is None else \
                    missing_keys(model, api_key=key, api_base=step.api_base)
                if unset:
                    lines.append(f"warning  {name}: step {step.name}: {model} needs {' and '.join(unset)}, not set")
    return lines


async def open_db(settings: Settings) -> Any:
    """Connect and run pending migrations; an unreachable database is one clear line."""
    from storage.db import connect
    from storage.migrate import upgrade

    safe_url = _safe_url(settings.database_url)
    try:
        db = connect(settings.database_url)
    except Exception as exc:  # noqa: BLE001 - any bad URL is the user's to fix
        raise DatabaseUnavailable(f"cannot use database {safe_url}: {exc}") from None
    try:
        await upgrade(db)
    except Exception as exc:  # noqa: BLE001 - unreachable server, bad credentials, unwritable file
        await db.dispose()
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        raise DatabaseUnavailable(f"cannot open database {safe_url}: {reason}") from None
    return db


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Any]:
    """An open, migrated database for one command, disposed of when it is done."""
    db = await open_db(settings)
    try:
        yield db
    finally:
        await db.dispose()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparseable: show nothing secret
        return "(unparseable DATABASE_URL)"


def _engine(db: Any, settings: Settings) -> Any:
    from agents.engine import Engine, EngineSettings
    from bot.settings import secrets_from_env

    return Engine(db, settings=EngineSettings(
        lease_seconds=settings.lease_seconds, delay_scale=settings.retry_delay_scale, secrets=secrets_from_env(),
        fetch_policy=settings.fetch_policy, mock=settings.mock,
    ))


def _load_spec(settings: Settings, name: str) -> Any:
    from agents.errors import SpecError
    from agents.loading import load_workflows

    specs, problems = load_workflows(settings.workflows)
    if name in specs:
        return specs[name]
    broken = [p for p in problems if name in p]
    if broken:
        raise SpecError("\n".join(broken))
    known = ", ".join(sorted(specs)) or f"none in {settings.workflows}"
    raise UnknownWorkflow(f"unknown workflow {name!r} (known: {known})")


@_async
async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Start a run here and drive it, with live progress and checkpoint prompts."""
    from agents.inputs import parse_assignments

    spec = _load_spec(settings, args.workflow)
    raw = parse_assignments(args.inputs)
    from agents.inputs import coerce_inputs

    coerce_inputs(spec, raw)  # bad input fails before the database is touched
    from bot.cli_drive import cli_user

    async with database(settings) as db:
        engine = _engine(db, settings)
        run_id = await engine.start(spec, raw, started_by=cli_user(), trigger="cli")
        return await _drive(engine, run_id, yes=args.yes, as_json=args.output == "json")


@_async
async def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    """Continue a run from its last completed step, or decide the checkpoint it waits at."""
    async with database(settings) as db:
        async with db.sessions() as session:
            run = await _find_run(session, args.run_id)
        return await _drive(_engine(db, settings), run.id, yes=args.yes, as_json=args.output == "json")


async def _find_run(session: Any, ref: str) -> Any:
    """The run a person named by id or unique prefix, or UnknownRun."""
    from agents.errors import UnknownRun
    from storage import run_queries

    run = await run_queries.find_run(session=session, ref=ref)
    if run is None:
        raise UnknownRun(f"no run {ref!r} (see `overseer runs`)")
    return run


async def _drive(engine: Any, run_id: str, *, yes: bool, as_json: bool = False) -> int:
    """Drive the run here; with `as_json`, progress goes to stderr and stdout gets one JSON object at the end."""
    from bot.cli_drive import drive

    out = sys.stderr if as_json else sys.stdout
    try:
        status = await drive(engine, run_id, yes=yes, out=out, results=not as_json)
    except asyncio.CancelledError:  # Ctrl-C: the run was handed back; say how to go on
        print(f"\noverseer: stopped; the run is saved. Continue it with: overseer resume {run_id}", file=sys.stderr, flush=True)
        raise
    if as_json:
        await _print_result_json(engine.db, run_id)
    if status == RunStatus.SUCCEEDED:
        return EXIT_OK
    if status == RunStatus.AWAITING_APPROVAL:
        print(f"run {run_id} waits for approval: decide with `overseer resume {run_id}`", file=out)
        return EXIT_WAITING
    return EXIT_FAILED


async def _print_result_json(db: Any, run_id: str) -> None:
    from agents.results import result_outputs
    from bot.cli_render import result_dict
    from storage import run_queries

    async with db.sessions() as session:
        run = await run_queries.get_run(session=session, run_id=run_id)
        outputs = result_outputs(run.spec, await run_queries.step_runs(session=session, run_id=run_id))
    print(json.dumps(result_dict(run, outputs), indent=2, ensure_ascii=False))


@_async
async def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    """The recorded runs, newest first."""
    from bot.cli_render import print_runs, run_dict
    from storage import run_queries

    async with database(settings) as db, db.sessions() as session:
        runs = list(await run_queries.list_runs(session=session, limit=args.limit, workflow=args.workflow))
    return _report(args, lambda: [run_dict(r) for r in runs], lambda out: print_runs(runs, out))


@_async
async def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    """One run with every attempt; with --output only its result."""
    from agents.results import result_outputs
    from bot.cli_render import attempt_dict, decision_dict, print_outputs, print_run, run_dict
    from storage import run_queries

    async with database(settings) as db, db.sessions() as session:
        run = await _find_run(session, args.run_id)
        steps = list(await run_queries.step_runs(session=session, run_id=run.id))
        tried = list(await run_queries.attempts(session=session, run_id=run.id))
        decided = list(await run_queries.decisions(session=session, run_id=run.id))
    if args.output:
        outputs = result_outputs(run.spec, steps)
        if not outputs:
            print(f"overseer: run {run.id} has no result ({run.status})", file=sys.stderr)
            return EXIT_FAILED
        return _report(args, lambda: outputs, lambda out: print_outputs(outputs, out))

    def data() -> dict[str, Any]:
        return run_dict(run) | {
            "steps": [{"step": s.step, "status": s.status, "input": s.input, "output": s.output, "error": s.error,
                       "attempts": s.attempts, "cost_usd": s.cost_usd} for s in steps],
            "attempts": [attempt_dict(a) for a in tried],
            "decisions": [decision_dict(d) for d in decided],
        }

    return _report(args, data, lambda out: print_run(run, steps, tried, decided, out))


def _report(args: argparse.Namespace, data: Callable[[], Any], render: Callable[[TextIO], None]) -> int:
    """Print what a command found: as JSON with --json, else for people."""
    if args.json:
        print(json.dumps(data(), indent=2, ensure_ascii=False))
    else:
        render(sys.stdout)
    return EXIT_OK


@_async
async def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    """Apply pending migrations."""
    from storage.migrate import current_revision

    async with database(settings) as db:
        print(f"database {_safe_url(settings.database_url)} is at revision {await current_revision(db)}")
    return EXIT_OK


@_async
async def cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    """Print the digest over the last --days days."""
    from agents.digest import compute_digest
    from agents.errors import UserInputError
    from bot.digest import digest_text
    from storage.models import utcnow

    if not 1 <= args.days <= 90:
        raise UserInputError("--days must be between 1 and 90")
    async with database(settings) as db:
        digest = await compute_digest(db, now=utcnow(), days=args.days)
    payload = digest.to_payload()
    print(json.dumps(payload, indent=2) if args.json else digest_text(payload))
    return EXIT_OK


@_async
async def cmd_profile(args: argparse.Namespace, settings: Settings) -> int:
    """Run each sample through the engine (approving checkpoints, announcing nothing) and print the figures."""
    from bot import cli_profile

    spec = _load_spec(settings, args.workflow)
    samples = cli_profile.load_samples(Path(args.inputs), spec, args.repeat)
    async with database(settings) as db:
        variants = await cli_profile.profile(_engine(db, settings), spec, samples, args.model, args.repeat)
    return _report(
        args, lambda: cli_profile.payload(spec, len(samples), args.repeat, variants),
        lambda out: cli_profile.print_profile(spec, len(samples), args.repeat, variants, out),
    )


@_async
async def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Score the workflow's spec against the outputs people approved; exit 1 below --min-agreement."""
    from agents.evals import run_eval
    from agents.loading import load_spec
    from bot.cli_eval import print_eval

    if args.last < 1:
        raise UserInputError("--last must be at least 1")
    spec = load_spec(Path(args.spec)) if args.spec else _load_spec(settings, args.workflow)
    async with database(settings) as db:
        report = await run_eval(db, spec, workflow=args.workflow, last=args.last, model=args.model,
                                engine_settings=_engine(db, settings).settings)
    _report(args, report.to_dict, lambda out: print_eval(report, out))
    if args.min_agreement is not None and report.agreement < args.min_agreement:
        print(f"overseer: agreement {report.agreement:.3f} is below --min-agreement {args.min_agreement:g}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the Slack bot until stopped."""
    settings.require_slack()
    from bot.server import serve

    asyncio.run(serve(settings))
    # Everything is closed by now. Collecting all that litellm loaded at interpreter exit takes about 2 s
    # of a stop's budget (Docker kills after 10): let the collector skip it.
    gc.freeze()
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "check": cmd_check, "run": cmd_run, "resume": cmd_resume, "runs": cmd_runs, "show": cmd_show,
    "db": cmd_db, "digest": cmd_digest, "eval": cmd_eval, "profile": cmd_profile, "serve": cmd_serve,
}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
