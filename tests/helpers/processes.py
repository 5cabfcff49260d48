"""`overseer` as a real subprocess, started from the repository with an environment the test controls."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from tests.helpers.paths import REPO


def overseer_env(**values: str) -> dict[str, str]:
    """This environment without Slack's or Overseer's settings (the developer's own must not leak in), plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OVERSEER_", "DATABASE_URL"))}
    return env | {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **values}


async def spawn_overseer(env: dict[str, str], *args: str, **streams: Any) -> asyncio.subprocess.Process:
    """Start `overseer ARGS` (as `python -m bot.cli`); `streams` are stdin/stdout/stderr, stdin empty by default."""
    streams.setdefault("stdin", asyncio.subprocess.DEVNULL)
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", *args, env=env, cwd=str(REPO), **streams)


async def overseer(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run `overseer ARGS` to its end: (exit status, stdout, stderr)."""
    proc = await spawn_overseer(env, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()
