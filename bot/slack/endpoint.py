"""POST /slack/events (HTTP mode): what reaches Bolt is small, well formed, signed and seen once.

Bolt verifies signatures, but reads a body whole whatever its size, answers a malformed timestamp or a
body that is not UTF-8 with a 500 and a traceback, and accepts the same signed request again and again
for five minutes. In front of it: a body over MAX_BODY is refused (413) before it is read whole, a
malformed request gets Bolt's own 401, and a signature already seen within the window is a replay (401).
The signatures seen are kept in this process only: replicas behind one URL do not share them.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

import structlog
from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = structlog.get_logger("overseer.slack.endpoint")

MAX_BODY = 1_000_000  # bytes; Slack's requests are a few kilobytes (a full form, some tens)
WINDOW = 5 * 60  # seconds either side of now a timestamp may be, as Bolt checks it
SEEN_CAPACITY = 50_000  # signatures remembered at most (only verified ones are, so only Slack can fill it)


def _refused() -> Response:
    return JSONResponse({"error": "invalid request"}, status_code=401)  # what Bolt answers a bad signature


class SeenSignatures:
    """Signatures of verified requests until their timestamp leaves the window; a second sighting is a replay."""

    def __init__(self, capacity: int = SEEN_CAPACITY, clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.clock = clock
        self._expiry: dict[str, float] = {}
        self._queue: list[tuple[float, str]] = []  # (expiry, signature), soonest first

    def __len__(self) -> int:
        return len(self._expiry)

    def first_sighting(self, signature: str, timestamp: int) -> bool:
        """Remember `signature` and say whether it is new; forget those that can no longer be replayed."""
        now = self.clock()
        while self._queue and (self._queue[0][0] < now or len(self._queue) >= self.capacity):
            if self._queue[0][0] >= now:
                log.warning("slack.replay_memory_full", capacity=self.capacity)
            del self._expiry[heapq.heappop(self._queue)[1]]
        if signature in self._expiry:
            return False
        expiry = timestamp + WINDOW  # after that Bolt refuses it as stale
        self._expiry[signature] = expiry
        heapq.heappush(self._queue, (expiry, signature))
        return True


async def read_capped(request: Request, cap: int = MAX_BODY) -> bytes | None:
    """The body, or None as soon as it is longer than `cap` bytes (said up front or found while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > cap):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class EventsEndpoint:
    """The Starlette endpoint for Slack's slash commands and interactivity, in front of Bolt."""

    def __init__(self, app: AsyncApp, signing_secret: str, *, seen: SeenSignatures | None = None) -> None:
        self.app = app
        self.verifier = SignatureVerifier(signing_secret)
        self.seen = seen or SeenSignatures()

    async def handle(self, request: Request) -> Response:
        """Refuse what must not reach Bolt; hand the rest to it."""
        body = await read_capped(request)
        if body is None:
            log.warning("slack.request_too_large", declared=request.headers.get("content-length"))
            return JSONResponse({"error": "request too large"}, status_code=413)
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not _utf8(body):
            log.info("slack.request_malformed")
            return _refused()
        if not self.verifier.is_valid(body, timestamp, signature):
            return _refused()
        if not self.seen.first_sighting(signature, int(timestamp)):
            log.warning("slack.request_replayed", timestamp=timestamp)
            return _refused()
        return to_starlette_response(await self.app.async_dispatch(to_async_bolt_request(request, body)))


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
