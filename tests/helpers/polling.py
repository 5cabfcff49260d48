"""Waiting in tests: poll a condition until it holds, or fail saying what never happened."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def eventually(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str | Callable[[], str] = "a condition", *,
    interval: float = 0.05,
) -> Any:
    """Call `predicate` (plain or async) until it returns something truthy and return that; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        await asyncio.sleep(interval)
