"""Tools: fetch_page reads readable text with limits and reaches only public addresses unless allowed;
tool failures are sorted like model failures."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

import pytest

from agents import fetch_guard
from agents.engine import Engine, EngineSettings
from agents.errors import CallTimeout, FetchRefused, PermanentError, RateLimited, ToolNotFound, TransientError
from agents.fetch_guard import FetchPolicy, address_problem
from agents.loading import parse_spec
from agents.tools import call_tool, fetch_page, resolve_tool
from storage import run_queries
from storage.db import Database
from tests.fakes.web_page import WebPage
from tests.helpers.runs import attempts_of

LOOPBACK = FetchPolicy(allow=("127.0.0.1",))  # the test pages live on loopback
SECRET = "admin password: hunter2"

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
    text = await fetch_page(page.url(), policy=LOOPBACK)
    assert text.startswith("# Pricing")
    assert "Starter costs $10 a month." in text and "Pro costs $30 a month & includes support." in text
    assert "track()" not in text and "Home | About" not in text and "body{}" not in text


async def test_fetch_page_caps_the_size(page: WebPage) -> None:
    page.routes["/big"] = (200, "<p>" + "x" * 500_000 + "</p>", {})
    assert len(await fetch_page(page.url("/big"), max_bytes=1000, policy=LOOPBACK)) <= 1000


@pytest.mark.parametrize(("status", "error"), [(404, PermanentError), (403, PermanentError), (503, TransientError), (429, RateLimited)])
async def test_fetch_page_sorts_http_errors(page: WebPage, status: int, error: type) -> None:
    page.routes["/e"] = (status, "no", {"Retry-After": "2"})
    with pytest.raises(error) as info:
        await fetch_page(page.url("/e"), policy=LOOPBACK)
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


# --- fetch_page is not a way into the network -----------------------------------------------------


@pytest.fixture
def internal(page: WebPage) -> WebPage:
    """The page server with an internal page whose body holds a secret."""
    page.routes["/admin"] = (200, f"<p>{SECRET}</p>", {})
    return page


@dataclasses.dataclass
class Resolver:
    """Names resolved from a table instead of DNS (fetch_guard.resolve is the seam), every lookup noted."""

    names: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    asked: list[str] = dataclasses.field(default_factory=list)

    async def resolve(self, host: str, port: int) -> list[fetch_guard.Address]:
        self.asked.append(host)
        return [ipaddress.ip_address(a) for a in self.names[host]]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    fake = Resolver()
    monkeypatch.setattr(fetch_guard, "resolve", fake.resolve)
    return fake


def assert_refused_without_the_body(info: pytest.ExceptionInfo[FetchRefused], host: str) -> None:
    message = str(info.value)
    assert host in message and "OVERSEER_FETCH_ALLOW" in message and "hunter2" not in message


async def test_an_internal_page_is_refused_before_any_request(internal: WebPage) -> None:
    with pytest.raises(FetchRefused, match="loopback") as info:
        await fetch_page(internal.url("/admin"))
    assert_refused_without_the_body(info, "127.0.0.1")
    assert internal.hits == []


async def test_a_redirect_from_an_allowed_server_to_an_internal_page_is_refused(
    internal: WebPage, resolver: Resolver
) -> None:
    resolver.names.update({"allowed.test": ["127.0.0.1"], "localhost": ["::1", "127.0.0.1"]})
    internal.routes["/go"] = (302, "", {"Location": internal.url("/admin")})
    internal.routes["/go-by-name"] = (302, "", {"Location": internal.url("/admin", host="localhost")})
    policy = FetchPolicy(allow=("allowed.test",))
    for path, host in (("/go", "127.0.0.1"), ("/go-by-name", "localhost")):
        with pytest.raises(FetchRefused) as info:
            await fetch_page(internal.url(path, host="allowed.test"), policy=policy)
        assert_refused_without_the_body(info, host)
        assert "redirected there from" in str(info.value)
    assert internal.hits == ["/go", "/go-by-name"]  # /admin was never asked for


async def test_a_redirect_to_another_scheme_fails_the_step_at_once(
    db: Database, engine_settings: EngineSettings, page: WebPage
) -> None:
    page.routes["/go"] = (302, "", {"Location": "file:///etc/passwd"})
    engine = Engine(db, settings=dataclasses.replace(engine_settings, fetch_policy=LOOPBACK))
    spec = parse_spec({"name": "t", "steps": [
        {"name": "crawl", "tool": "fetch_page", "args": {"url": page.url("/go")}, "retry": {"attempts": 3}}]}, "t.yaml")
    run_id = await engine.start(spec, {}, started_by="t")
    assert await engine.advance(run_id) == "failed"
    async with engine.db.sessions() as session:
        tried = list(await run_queries.attempts(session=session, run_id=run_id))
    assert [a.error_type for a in tried] == ["FetchRefused"]
    assert "only http and https" in (tried[0].error_message or "") and page.hits == ["/go"]


async def test_a_url_with_credentials_is_refused_without_repeating_them(page: WebPage) -> None:
    with pytest.raises(FetchRefused, match="credentials") as info:
        await fetch_page(page.url().replace("http://", "http://admin:hunter2@"), policy=LOOPBACK)
    assert "hunter2" not in str(info.value) and page.hits == []


@pytest.mark.parametrize("kind", ["application/octet-stream", "image/png", "application/pdf", None])
async def test_a_binary_content_type_is_refused_naming_it(page: WebPage, kind: str | None) -> None:
    page.routes["/file"] = (200, "PK\x03\x04", {"Content-Type": kind or ""})
    with pytest.raises(FetchRefused, match=re.escape(f"content type {kind or '(none)'} is not text")):
        await fetch_page(page.url("/file"), policy=LOOPBACK)


@pytest.mark.parametrize("kind", ["text/plain", "application/json", "application/xml", "text/xml",
                                  "application/ld+json", "application/atom+xml; charset=utf-8"])
async def test_textual_content_types_are_read(page: WebPage, kind: str) -> None:
    page.routes["/t"] = (200, "plain words", {"Content-Type": kind})
    assert await fetch_page(page.url("/t"), policy=LOOPBACK) == "plain words"


@pytest.mark.parametrize("allow", ["localhost", "LOCALHOST.", "127.0.0.0/8", "::1,127.0.0.1"])
async def test_the_allow_list_admits_hosts_by_name_and_networks_by_cidr(page: WebPage, allow: str) -> None:
    assert (await fetch_page(page.url(host="localhost"), policy=FetchPolicy.parse(allow))).startswith("# Pricing")


async def test_a_network_that_does_not_hold_the_address_allows_nothing(page: WebPage) -> None:
    with pytest.raises(FetchRefused):
        await fetch_page(page.url(), policy=FetchPolicy.parse("10.0.0.0/8, intranet.example"))


@pytest.mark.parametrize("url", ["http://[::1]:{port}/pricing", "http://[::ffff:127.0.0.1]:{port}/pricing",
                                 "http://localhost:{port}/pricing", "http://0.0.0.0:{port}/pricing"])
async def test_loopback_by_any_spelling_is_refused(page: WebPage, url: str) -> None:
    with pytest.raises(FetchRefused, match="not a public address"):
        await fetch_page(url.format(port=page.port))
    assert page.hits == []


async def test_every_resolved_address_is_checked(resolver: Resolver) -> None:
    resolver.names["mixed.test"] = ["93.184.216.34", "10.1.2.3"]
    with pytest.raises(FetchRefused, match=r"mixed.test \(it resolves to 10.1.2.3\).*private") as info:
        await fetch_page("http://mixed.test/")
    assert "add mixed.test or 10.1.2.3" in str(info.value)


async def test_the_request_goes_to_the_address_that_was_checked(page: WebPage, resolver: Resolver) -> None:
    """Resolved once per hop and connected to by address, so a second DNS answer cannot change where it goes."""
    resolver.names["page.test"] = ["127.0.0.1"]
    text = await fetch_page(page.url(host="page.test"), policy=FetchPolicy.parse("127.0.0.0/8"))
    assert text.startswith("# Pricing")
    assert page.host_headers == [f"page.test:{page.port}"] and resolver.asked == ["page.test"]


async def test_redirects_are_followed_a_bounded_number_of_times(page: WebPage) -> None:
    page.routes["/a"] = (301, "", {"Location": "/b"})
    page.routes["/b"] = (307, "", {"Location": page.url()})
    assert (await fetch_page(page.url("/a"), policy=LOOPBACK)).startswith("# Pricing")
    page.routes["/loop"] = (302, "", {"Location": "/loop"})
    with pytest.raises(PermanentError, match="redirects more than 5 times"):
        await fetch_page(page.url("/loop"), policy=LOOPBACK)
    assert page.hits.count("/loop") == 6


async def test_a_spec_cannot_hand_fetch_page_another_policy(page: WebPage) -> None:
    with pytest.raises(PermanentError, match="rejected its args"):
        await call_tool("fetch_page", {"url": page.url(), "policy": LOOPBACK}, timeout=5)
    assert await call_tool("fetch_page", {"url": page.url()}, timeout=5, fetch_policy=LOOPBACK)


@pytest.mark.parametrize(("address", "problem"), [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"),
    ("0.0.0.0", "unspecified"), ("100.64.0.1", "non-public"), ("::1", "loopback"), ("::", "unspecified"),
    ("fe80::1", "link-local"), ("ff02::1", "multicast"), ("fc00::1", "private"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"), ("2002:7f00:1::", "loopback"), ("93.184.216.34", None),
    ("2606:4700::1111", None),
])
def test_addresses_are_sorted_public_or_not(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


def test_a_malformed_allow_list_entry_is_named() -> None:
    with pytest.raises(ValueError, match="'not a host'"):
        FetchPolicy.parse("127.0.0.1, not a host")
