"""A run's live progress in the terminal: a line per announcement, the running step's elapsed time ticking
(on a terminal), each finished step's time, tokens and cost, and the result when the run succeeds."""

from __future__ import annotations

import time
from typing import Any, TextIO

from agents import outbox
from agents.results import result_outputs
from bot.cli_render import progress_line, result_lines
from bot.format import duration, money, step_icon
from storage import outbox_queries, run_queries
from storage.models import utcnow
from storage.status import RunStatus, StepStatus

_FINISHED = (outbox.StepSucceeded.kind, outbox.CheckpointWaiting.kind)
_drawing: list[Progress] = []  # progress with its ticking line on the terminal now


class BesideProgress:
    """A stream (the logs' stderr) whose writes first clear a ticking progress line, so they never run into it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        for progress in _drawing:
            progress.clear()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(self.stream.isatty())


class Progress:
    """Prints a run's undelivered announcements once each: the terminal is their surface."""

    def __init__(self, out: TextIO, *, live: bool | None = None, results: bool = True) -> None:
        self.out = out
        self.live = bool(out.isatty()) if live is None else live  # redraw the running step's line in place
        self.results = results  # print the result before the line saying the run succeeded
        self.running: tuple[str, float] | None = None
        self._drawn = False  # the ticking line is on screen, without its newline

    async def show(self, engine: Any, run_id: str) -> None:
        """Print what the run announced since the last call (and mark it delivered)."""
        async with engine.db.sessions.begin() as session:
            messages = [m for m in await outbox_queries.outbox_since(session=session, after_id=0, run_id=run_id)
                        if m.delivered_at is None]
            for message in messages:
                for line in await self._lines(session, message):
                    self._print(line)
            await outbox_queries.mark_outbox_done(session=session, message_ids=[m.id for m in messages], now=utcnow())

    def tick(self) -> None:
        """Redraw the running step's elapsed time (on a terminal only)."""
        if self.live and self.running is not None:
            step, since = self.running
            self.out.write(f"\r  {step_icon(StepStatus.RUNNING)} {step} … {duration(time.monotonic() - since)}\x1b[K")
            self.out.flush()
            if not self._drawn:
                _drawing.append(self)
            self._drawn = True

    def clear(self) -> None:
        """Take the ticking line off the screen (the next tick draws it again)."""
        if self._drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._drawn = False
            _drawing.remove(self)

    def _print(self, line: str) -> None:
        self.clear()
        print(line, file=self.out, flush=True)

    async def _lines(self, session: Any, message: Any) -> list[str]:
        line = progress_line(message)
        if message.kind == outbox.StepStarted.kind:
            self.running = (str(message.payload.get("step")), time.monotonic())
            return [] if self.live else [line or ""]
        if message.kind in _FINISHED:
            self.running = None
            figures = await self._figures(session, message.run_id, str(message.payload.get("step")))
            return [f"{line} · {figures}" if message.kind == outbox.StepSucceeded.kind else f"{line} ({figures})"]
        if message.kind == outbox.RunFinished.kind:
            self.running = None
            if self.results and message.payload.get("status") == RunStatus.SUCCEEDED:
                return [*await self._result(session, message.run_id), line or ""]
        return [line] if line else []

    async def _figures(self, session: Any, run_id: str, step: str) -> str:
        """`1.2s · 10 in / 5 out tokens · $0.0001` for a finished step."""
        step_run = await run_queries.get_step_run(session=session, run_id=run_id, step=step)
        tried = await run_queries.attempts(session=session, run_id=run_id, step=step)
        tokens_in, tokens_out = sum(a.tokens_in for a in tried), sum(a.tokens_out for a in tried)
        took = (step_run.finished_at - step_run.started_at).total_seconds() \
            if step_run and step_run.started_at and step_run.finished_at else sum(a.latency_ms for a in tried) / 1000
        tokens = f" · {tokens_in} in / {tokens_out} out tokens" if tokens_in or tokens_out else ""
        return f"{duration(took)}{tokens} · {money(step_run.cost_usd if step_run else 0.0)}"

    async def _result(self, session: Any, run_id: str) -> list[str]:
        run = await run_queries.get_run(session=session, run_id=run_id)
        if run is None:
            return []
        outputs = result_outputs(run.spec, await run_queries.step_runs(session=session, run_id=run_id))
        return result_lines(outputs)
