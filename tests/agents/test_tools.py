"""Tools: fetch_page reads readable text with limits; tool failures are sorted like model failures."""

from __future__ import annotations

import pytest

from agents.engine import Engine
from agents.errors import CallTimeout, PermanentError, RateLimited, ToolNotFound, TransientError
from agents.loading import parse_spec
from agents.tools import call_tool, fetch_page, resolve_tool
from tests.fakes.web_page import WebPage
from tests.helpers.runs import attempts_of

FLAKY = {"calls": 0}


def flaky_tool(word: str) -> str:
    """Fails twice with a connection error, then answers (used by name in a spec below)."""
    FLAKY["calls"] += 1
    if FLAKY["calls"] < 3:
        raise ConnectionError("connection reset")
    return f"got {word}"


async def slow_tool(seconds: float) -> str:
    """Sleeps, to show a tool's timeout."""
    import asyncio

    await asyncio.sleep(seconds)
    return "late"


async def test_fetch_page_returns_readable_text_without_scripts_or_chrome(page: WebPage) -> None:
    text = await fetch_page(page.url())
    assert text.startswith("# Pricing")
    assert "Starter costs $10 a month." in text and "Pro costs $30 a month & includes support." in text
    assert "track()" not in text and "Home | About" not in text and "body{}" not in text


async def test_fetch_page_caps_the_size(page: WebPage) -> None:
    page.routes["/big"] = (200, "<p>" + "x" * 500_000 + "</p>", {})
    assert len(await fetch_page(page.url("/big"), max_bytes=1000)) <= 1000


@pytest.mark.parametrize(("status", "error"), [(404, PermanentError), (403, PermanentError), (503, TransientError), (429, RateLimited)])
async def test_fetch_page_sorts_http_errors(page: WebPage, status: int, error: type) -> None:
    page.routes["/e"] = (status, "no", {"Retry-After": "2"})
    with pytest.raises(error) as info:
        await fetch_page(page.url("/e"))
    if status == 429:
        assert info.value.retry_after == 2


async def test_fetch_page_refuses_non_http_urls() -> None:
    with pytest.raises(PermanentError, match="not an http"):
        await fetch_page("file:///etc/passwd")


async def test_unknown_tools_and_slow_tools() -> None:
    with pytest.raises(ToolNotFound):
        resolve_tool("no_such_tool")
    with pytest.raises(ToolNotFound):
        resolve_tool("tests.agents.test_tools:nothing_here")
    with pytest.raises(CallTimeout):
        await call_tool("tests.agents.test_tools:slow_tool", {"seconds": 2}, timeout=0.1)
    with pytest.raises(PermanentError, match="rejected its args"):
        await call_tool("tests.agents.test_tools:flaky_tool", {"nope": 1}, timeout=1)


async def test_a_tool_step_is_retried_and_recorded_like_a_model_step(engine: Engine) -> None:
    FLAKY["calls"] = 0
    spec = parse_spec({"name": "t", "steps": [
        {"name": "flaky", "tool": "tests.agents.test_tools:flaky_tool", "args": {"word": "hello"}}]}, "t.yaml")
    run_id = await engine.start(spec, {}, started_by="t")
    assert await engine.advance(run_id) == "succeeded"
    tried = await attempts_of(engine, run_id)
    assert [a.error_type for a in tried] == ["TransientError", "TransientError", None]
    assert tried[-1].input == {"tool": "tests.agents.test_tools:flaky_tool", "args": {"word": "hello"}}
    assert tried[-1].parsed_output == "got hello"
