"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, scripted per test.

Also home of `LoopbackServer` / `QuietHandler`, the small threaded HTTP server both fakes share.
"""

from __future__ import annotations

import itertools
import json
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

# --- the shared loopback server --------------------------------------------------------------


class QuietHandler(BaseHTTPRequestHandler):
    """Base request handler: HTTP/1.1 keep-alive, buffered writes, no Nagle, no logging."""

    # Without these three, a reply is written in pieces and the client waits ~40 ms for
    # delayed ACKs before it sees the end of it.
    protocol_version = "HTTP/1.1"
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay silent: test output is not the place for access logs."""

    @property
    def owner(self) -> Any:
        """The fake this server belongs to."""
        return self.server.owner  # type: ignore[attr-defined]

    def read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Trailers end with an empty line.
                while self.rfile.readline().strip():
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send a complete response with a correct Content-Length."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def reply_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        """Send `obj` as a JSON response."""
        self.reply(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    def drop(self) -> None:
        """Close the connection without answering."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owner and its open client connections."""

    daemon_threads = True
    # Lets `up()` re-bind the same port while old connections sit in TIME_WAIT.
    allow_reuse_address = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        self.owner = owner
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can stall on a machine without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._clients_lock:
            self._clients.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._clients_lock:
            self._clients.discard(request)
        super().shutdown_request(request)

    def drop_clients(self) -> None:
        """Cut every open connection, so pooled keep-alive clients see the server go away."""
        with self._clients_lock:
            clients = list(self._clients)
        for sock in clients:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, dropped reply) is expected in these tests, not news.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 that can be stopped and restarted on the same port."""

    handler_class: type[BaseHTTPRequestHandler] = QuietHandler

    def __init__(self) -> None:
        self._port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Set while stopping, so slow or hanging replies give up instead of holding threads.
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        """The bound port (stays the same across stop/start once bound)."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    def start(self) -> Self:
        """Bind (the same port as before, if any) and serve from a daemon thread."""
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = _Server(self._port, self.handler_class, self)
        self._port = self._server.server_address[1]
        # A short poll interval keeps stop() fast; the default 0.5 s adds up over a test run.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections; new connections are refused."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.server_close()
        server.drop_clients()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False if the server started stopping meanwhile."""
        return not self.stopping.wait(seconds)


# --- replies ---------------------------------------------------------------------------------

_ERROR_TYPES = {401: "invalid_request_error", 429: "requests"}
_ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
_ERROR_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to use this model.",
    404: "The model does not exist.",
    429: "Rate limit reached for requests.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


@dataclass(frozen=True, eq=False)
class Reply:
    """What the fake answers to one request; build it with the class-method constructors."""

    kind: str
    content: str = ""
    prompt_tokens: int = 10
    completion_tokens: int = 5
    status_code: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    then: Reply | None = None
    event: threading.Event | None = None

    @classmethod
    def text(cls, content: str, *, prompt_tokens: int = 10, completion_tokens: int = 5) -> Reply:
        """A successful completion whose message content is `content`."""
        return cls("ok", content, prompt_tokens, completion_tokens)

    @classmethod
    def json(cls, obj: Any, *, prompt_tokens: int = 10, completion_tokens: int = 5) -> Reply:
        """A successful completion whose content is `json.dumps(obj)`."""
        return cls.text(json.dumps(obj), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    @classmethod
    def status(cls, code: int, *, retry_after: float | None = None, message: str | None = None) -> Reply:
        """An HTTP error with an OpenAI-style error body (and Retry-After if given)."""
        error = {
            "message": message or _ERROR_MESSAGES.get(code, f"HTTP {code}"),
            "type": _ERROR_TYPES.get(code, "server_error" if code >= 500 else "invalid_request_error"),
            "param": None,
            "code": _ERROR_CODES.get(code),
        }
        headers = {"Retry-After": _number(retry_after)} if retry_after is not None else {}
        return cls("status", status_code=code, error=error, headers=headers)

    @classmethod
    def refusal(cls, message: str = "Your request was rejected as a result of our safety system.") -> Reply:
        """HTTP 400 with OpenAI's content-policy error (code content_policy_violation)."""
        error = {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "content_policy_violation",
        }
        return cls("status", status_code=400, error=error)

    @classmethod
    def malformed(cls) -> Reply:
        """HTTP 200 whose body is not JSON."""
        return cls("malformed")

    @classmethod
    def slow(cls, seconds: float, then: Reply) -> Reply:
        """Wait `seconds`, then answer `then`."""
        return cls("slow", delay=seconds, then=then)

    @classmethod
    def hang(cls, event: threading.Event) -> Reply:
        """Block until `event` is set (or 60 s), then answer the text "late"."""
        return cls("hang", event=event, then=cls.text("late"))

    @classmethod
    def drop(cls) -> Reply:
        """Close the connection without answering."""
        return cls("drop")


def _number(value: float) -> str:
    """Render 2.0 as "2" so headers look like a real server's."""
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Recorded:
    """One request the fake received; `at` is time.monotonic() on arrival."""

    model: str | None
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


Responder = Callable[[dict[str, Any]], Reply | None]


# --- the fake --------------------------------------------------------------------------------


class _ModelHandler(QuietHandler):
    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        raw = self.read_body()
        path = self.path.split("?", 1)[0].rstrip("/")
        if not path.endswith("/chat/completions"):
            self.reply_json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        fake: FakeModel = self.owner
        reply = fake.take(body, dict(self.headers.items()))
        self.answer(reply, body)

    def answer(self, reply: Reply, body: dict[str, Any]) -> None:
        """Carry out `reply` on this connection."""
        fake: FakeModel = self.owner
        if reply.kind == "ok":
            self.reply_json(200, _completion(reply, body, fake.next_id()))
        elif reply.kind == "status":
            self.reply_json(reply.status_code, {"error": reply.error}, reply.headers)
        elif reply.kind == "malformed":
            self.reply(200, b"<html>this is not JSON", "application/json")
        elif reply.kind == "slow":
            if fake.sleep(reply.delay) and reply.then is not None:
                self.answer(reply.then, body)
            else:
                self.drop()
        elif reply.kind == "hang":
            self._hang(reply, body)
        else:
            self.drop()

    def _hang(self, reply: Reply, body: dict[str, Any]) -> None:
        fake: FakeModel = self.owner
        assert reply.event is not None and reply.then is not None
        deadline = time.monotonic() + 60
        # Poll so that stopping the fake also releases hung handlers.
        while not reply.event.wait(0.05):
            if fake.stopping.is_set() or time.monotonic() > deadline:
                break
        if fake.stopping.is_set():
            self.drop()
        else:
            self.answer(reply.then, body)


def _completion(reply: Reply, body: dict[str, Any], number: int) -> dict[str, Any]:
    """A chat.completion object answering `body` with `reply`'s content."""
    return {
        "id": f"chatcmpl-fake{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


class FakeModel(LoopbackServer):
    """Fake OpenAI-compatible `/v1/chat/completions`, scripted with `Reply`s, recording requests."""

    handler_class = _ModelHandler

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._per_model: dict[str, deque[Reply]] = {}
        self._ids = itertools.count(1)
        self.requests: list[Recorded] = []
        self.default: Reply = Reply.text("ok")
        self.responder: Responder | None = None

    @property
    def api_base(self) -> str:
        """Base URL for litellm's `api_base` (with model "openai/<name>")."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies for requests to any model, first in first out."""
        with self._lock:
            self._queue.extend(replies)

    def script_for(self, model: str, *replies: Reply) -> None:
        """Queue replies only for requests whose body "model" equals `model`."""
        with self._lock:
            self._per_model.setdefault(model, deque()).extend(replies)

    @property
    def count(self) -> int:
        """How many requests arrived (failed ones included)."""
        with self._lock:
            return len(self.requests)

    def count_for(self, model: str) -> int:
        """How many requests arrived for `model`."""
        with self._lock:
            return sum(1 for r in self.requests if r.model == model)

    def reset(self) -> None:
        """Forget queued replies and recorded requests (default and responder stay)."""
        with self._lock:
            self._queue.clear()
            self._per_model.clear()
            self.requests.clear()

    def next_id(self) -> int:
        """A fresh number for completion ids."""
        with self._lock:
            return next(self._ids)

    def take(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        """Record a request and choose its reply: responder, model queue, shared queue, default."""
        model = body.get("model")
        with self._lock:
            self.requests.append(Recorded(model, body, headers, time.monotonic()))
            responder = self.responder
        # Outside the lock: the responder may call back into the fake.
        if responder is not None:
            reply = responder(body)
            if reply is not None:
                return reply
        with self._lock:
            queue = self._per_model.get(model) if isinstance(model, str) else None
            if queue:
                return queue.popleft()
            if self._queue:
                return self._queue.popleft()
            return self.default
