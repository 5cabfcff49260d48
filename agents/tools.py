"""Tools a step can call: the built-ins, or any "package.module:function"."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from agents.errors import (
    CallTimeout, FetchRefused, PermanentError, RateLimited, StepError, ToolNotFound, TransientError,
)
from agents.fetch_guard import FetchPolicy, get_checked

if TYPE_CHECKING:
    import httpx

MAX_PAGE_BYTES = 2_000_000
MAX_PAGE_CHARS = 60_000
MAX_REDIRECTS = 5
PUBLIC_ONLY = FetchPolicy()
TEXT_TYPES = frozenset({"text/html", "text/plain", "text/xml", "application/json", "application/xml"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _TextExtractor(HTMLParser):
    """Readable text of an HTML page: no scripts, styles or navigation chrome."""

    _SKIP = {"script", "style", "noscript", "svg", "nav", "footer", "header", "form", "template", "iframe"}
    _BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "title", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag == "title":
            self._in_title = False
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The title and readable text of an HTML document, whitespace folded."""
    parser = _TextExtractor()
    parser.feed(html)
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).splitlines())
    body = "\n".join(line for line in lines if line)
    title = parser.title.strip()
    return f"# {title}\n\n{body}" if title else body


async def fetch_page(
    url: str, max_bytes: int = MAX_PAGE_BYTES, timeout: float = 20.0, *, policy: FetchPolicy = PUBLIC_ONLY
) -> str:
    """HTTP GET a page and return its readable text, reading at most max_bytes; refuses what `policy` does not allow."""
    import httpx

    try:
        body, kind, charset = await _get(url, policy, max_bytes, timeout)
    except httpx.TimeoutException as exc:
        raise CallTimeout(f"fetch_page: {url} timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"fetch_page: {url}: {type(exc).__name__}: {exc}") from exc
    text = bytes(body[:max_bytes]).decode(charset, errors="replace")
    if "html" in kind or text.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        text = html_to_text(text)
    return text[:MAX_PAGE_CHARS]


async def _get(url: str, policy: FetchPolicy, max_bytes: int, timeout: float) -> tuple[bytearray, str, str]:
    """(body, media type, charset) of the page, following redirects here so that every hop is checked."""
    target = _checked_url(url)
    for hop in range(MAX_REDIRECTS + 1):
        try:
            async with get_checked(target, policy, headers={"User-Agent": "overseer/0.1"}, timeout=timeout) as response:
                location = response.headers.get("location") if response.status_code in _REDIRECTS else None
                if location is None:
                    _raise_for_status(response.status_code, response.headers.get("retry-after"), url)
                    kind = _textual_type(response.headers.get("content-type"), target)
                    return await _read(response, max_bytes), kind, response.charset_encoding or "utf-8"
        except FetchRefused as exc:
            if not hop:
                raise
            raise FetchRefused(f"{exc} (redirected there from {url})") from None
        target = _checked_url(location, base=target)
    raise PermanentError(f"fetch_page: {url} redirects more than {MAX_REDIRECTS} times")


def _checked_url(url: str, *, base: httpx.URL | None = None) -> httpx.URL:
    """The URL (a redirect's Location joined to its base) if it is http(s) without credentials."""
    import httpx

    via = f" (a redirect from {base.host})" if base is not None else ""
    try:
        parsed = base.join(url) if base is not None else httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise PermanentError(f"fetch_page: {url!r} is not a valid URL{via}: {exc}") from None
    if parsed.userinfo:
        # The URL is not repeated: its password would end up in the failure report.
        raise FetchRefused(f"fetch_page refused a URL for {parsed.host or '?'}{via}: it carries credentials (user:pass@)")
    if parsed.scheme not in ("http", "https") or not parsed.host:
        if base is not None:
            raise FetchRefused(f"fetch_page refused a redirect from {base.host} to a {parsed.scheme}: URL: "
                               "only http and https are fetched")
        raise PermanentError(f"fetch_page: {url!r} is not an http(s) URL")
    return parsed


def _textual_type(header: str | None, url: httpx.URL) -> str:
    """The response's media type if it is text fetch_page reads; FetchRefused naming it otherwise."""
    kind = (header or "").split(";")[0].strip().lower()
    if kind in TEXT_TYPES or kind.endswith(("+json", "+xml")):
        return kind
    raise FetchRefused(f"fetch_page refused {url.host}: its content type {kind or '(none)'} is not text "
                       f"(reads {', '.join(sorted(TEXT_TYPES))}, +json, +xml)")


async def _read(response: httpx.Response, max_bytes: int) -> bytearray:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk)
        if len(body) >= max_bytes:
            break
    return body


def _raise_for_status(status: int, retry_after: str | None, url: str) -> None:
    if status < 400:
        return
    message = f"fetch_page: {url} answered HTTP {status}"
    if status == 429:
        try:
            delay = float(retry_after) if retry_after else None
        except ValueError:
            delay = None
        raise RateLimited(message, retry_after=delay)
    if status >= 500 or status == 408:
        raise TransientError(message)
    raise PermanentError(message)


BUILTIN_TOOLS: dict[str, Callable[..., Any]] = {"fetch_page": fetch_page}


def resolve_tool(ref: str) -> Callable[..., Any]:
    """The function a step's `tool:` names."""
    if ref in BUILTIN_TOOLS:
        return BUILTIN_TOOLS[ref]
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ToolNotFound(f"unknown tool {ref!r}: use a built-in ({', '.join(BUILTIN_TOOLS)}) or package.module:function")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ToolNotFound(f"tool {ref!r} cannot be imported: {exc}") from None
    if not callable(func):
        raise ToolNotFound(f"tool {ref!r} is not callable")
    return func


async def call_tool(ref: str, args: dict[str, Any], *, timeout: float, fetch_policy: FetchPolicy = PUBLIC_ONLY) -> Any:
    """Call a tool with its rendered args under a timeout; failures come back as typed StepErrors.
    Built-in tools also get the fetch policy (args cannot override it: a duplicate keyword is refused)."""
    func = resolve_tool(ref)
    given = {"policy": fetch_policy} if ref in BUILTIN_TOOLS else {}
    try:
        async with asyncio.timeout(timeout):
            if inspect.iscoroutinefunction(func):
                return await func(**args, **given)
            return await asyncio.to_thread(func, **args, **given)
    except StepError:
        raise
    except TimeoutError as exc:
        raise CallTimeout(f"tool {ref} took longer than {timeout:g}s") from exc
    except TypeError as exc:
        raise PermanentError(f"tool {ref} rejected its args: {exc}") from exc
    except (ConnectionError, OSError) as exc:
        raise TransientError(f"tool {ref}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a bug in a tool fails the step, with its message
        raise PermanentError(f"tool {ref}: {type(exc).__name__}: {exc}") from exc
