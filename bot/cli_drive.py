"""Driving a run from the terminal: live progress from the outbox, checkpoints answered at the prompt."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, TextIO

from agents.errors import AlreadyDecided, InvalidState, UserInputError
from agents.text import as_text
from bot.cli_progress import Progress
from bot.format import duration
from storage import run_queries
from storage.models import utcnow
from storage.status import RUNNABLE, Action, RunStatus


def cli_user() -> str:
    """Who acts from this terminal, as runs and decisions record it."""
    return f"cli:{os.environ.get('USER') or 'cli'}"


async def _advance(engine: Any, run_id: str, progress: Progress) -> str:
    """Drive until the run stops or waits; interrupted (Ctrl-C), hand the run back before going."""
    task = asyncio.create_task(engine.advance(run_id))
    try:
        while not task.done():
            await progress.show(engine, run_id)
            progress.tick()
            await asyncio.wait([task], timeout=0.2)
    except asyncio.CancelledError:
        task.cancel()  # the engine hands its lease back as it stops, so `resume` need not wait it out
        with contextlib.suppress(BaseException):
            await asyncio.shield(asyncio.wait([task], timeout=5))
        raise
    await progress.show(engine, run_id)
    return task.result()


async def _wait_for_lease(engine: Any, run_id: str, out: TextIO, seen: set[Any]) -> None:
    async with engine.db.sessions() as session:
        run = await run_queries.get_run(session=session, run_id=run_id)
    if run is None or run.lease_expires_at is None:
        return
    if run.lease_expires_at in seen:
        raise InvalidState(f"run {run_id} is being driven by {run.lease_owner}; follow it with `overseer show {run_id}`")
    seen.add(run.lease_expires_at)
    delay = max(0.0, (run.lease_expires_at - utcnow()).total_seconds()) + 0.2
    print(f"  … run is leased by {run.lease_owner}; waiting {duration(delay)} for the lease to lapse", file=out, flush=True)
    await asyncio.sleep(delay)


async def drive(engine: Any, run_id: str, *, yes: bool, out: TextIO, results: bool = True) -> str:
    """Drive a run to its end, deciding checkpoints at the prompt (or approving all with yes)."""
    seen_leases: set[Any] = set()
    progress = Progress(out, results=results)
    while True:
        status = await _advance(engine, run_id, progress)
        if status in RUNNABLE:
            await _wait_for_lease(engine, run_id, out, seen_leases)
            continue
        if status != RunStatus.AWAITING_APPROVAL:
            return status
        if not await _checkpoint(engine, run_id, yes=yes, out=out):
            return status
        await progress.show(engine, run_id)


_typed = bytearray()  # what was typed (or piped) past the line last asked for


async def _ask(prompt: str, out: TextIO) -> str | None:
    """A line typed at the prompt (None at end of input). Read without a thread, so Ctrl-C never waits on it."""
    print(prompt, end="", file=out, flush=True)  # on the progress stream: stdout may be for a script
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    while b"\n" not in _typed:
        await _readable(fd)
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        _typed.extend(chunk)
    if not _typed:
        return None
    line, _, rest = bytes(_typed).partition(b"\n")
    _typed[:] = rest
    return line.decode("utf-8", errors="replace").strip()


async def _readable(fd: int) -> None:
    """Wait until `fd` has something to read (a file or /dev/null always has: no wait)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    try:
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    except (OSError, NotImplementedError, ValueError):
        return
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _checkpoint(engine: Any, run_id: str, *, yes: bool, out: TextIO) -> bool:
    """Decide the waiting checkpoint; False when nobody can answer here (no terminal, no --yes)."""
    run_id, step, output, spec = await engine.pending_step(run_id)
    print(f"\n── checkpoint: {step} ──\n{as_text(output)}\n", file=out, flush=True)
    if yes:
        outcome = await engine.decide(run_id, step, action=Action.APPROVE, by=cli_user())
        print("  approved (--yes)", file=out, flush=True)
        return _goes_on(outcome, out)
    draft = _Draft(as_text(output))
    while True:
        answer = await _ask("[a]pprove, [e]dit, [v] revise with a note, [r]eject? ", out)
        if answer is None:
            return False
        choice = answer[:1].lower()
        try:
            decided = await _answer(engine, run_id, step, choice, draft, spec, out)
        except AlreadyDecided:
            raise  # decided elsewhere just now: nothing left to ask
        except UserInputError as exc:  # a broken edit, no revisions left, already approved, the starter's own run
            kept = " (your edit is kept)" if choice == "e" else ""
            print(f"  {exc}; nothing changed, try again{kept}", file=out, flush=True)
            continue
        if decided is not None:
            return decided


@dataclass
class _Draft:
    """The text the next edit starts from: the output at first, then what was typed last."""

    text: str


async def _answer(engine: Any, run_id: str, step: str, choice: str, draft: _Draft, spec: Any, out: TextIO) -> bool | None:
    """Act on one answer at the prompt: whether the drive goes on, or None to ask again."""
    by = cli_user()
    if choice == "a":
        return _goes_on(await engine.decide(run_id, step, action=Action.APPROVE, by=by), out)
    if choice == "r":
        reason = await _ask("reason: ", out)
        await engine.decide(run_id, step, action=Action.REJECT, by=by, reason=reason or None)
        return True
    if choice == "e":
        draft.text = await asyncio.to_thread(_edit_in_editor, draft.text, spec.step(step).output.format)
        return _goes_on(await engine.decide(run_id, step, action=Action.EDIT, by=by, edited=draft.text), out)
    if choice == "v":
        note = await _ask("what should change? ", out)
        if not note:
            return None
        revised = await engine.revise(run_id, step, by=by, note=note)
        print(f"  revising: v{revised.version} follows ({revised.revisions_left} revision(s) left)", file=out, flush=True)
        return True
    return None


def _goes_on(outcome: Any, out: TextIO) -> bool:
    """Whether the run moves on; with several approvals needed, say how many are still missing."""
    if outcome.run_status == RunStatus.AWAITING_APPROVAL and outcome.approvers:
        print(f"  {len(outcome.approvers)} of {outcome.needed} approved; the others decide in Slack "
              f"or with `overseer resume {outcome.run_id}`", file=out, flush=True)
        return False
    return True


def _edit_in_editor(text: str, fmt: str) -> str:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w+", suffix=".json" if fmt == "json" else ".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        path = f.name
    try:
        subprocess.run([*shlex.split(editor), path], check=False)
        with open(path, encoding="utf-8") as f:
            return f.read()
    finally:
        os.unlink(path)
