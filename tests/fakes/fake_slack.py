"""A fake Slack Web API on 127.0.0.1 that stores what was posted and enforces Slack's limits."""

from __future__ import annotations

import asyncio
import copy
import email.parser
import email.policy
import itertools
import json
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.fake_model import LoopbackServer, QuietHandler

TEAM_ID = "T0TEST"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"

Args = dict[str, Any]
Answer = dict[str, Any]


@dataclass
class Call:
    """One Web API request that reached the server; `at` is time.monotonic() on arrival."""

    method: str
    args: Args
    headers: dict[str, str]
    at: float
    answered_ok: bool = False
    status: int = 0
    error: str | None = None
    verb: str = "POST"


@dataclass
class Upload:
    """A file uploaded with files_upload_v2 (content arrives before completion)."""

    file_id: str
    filename: str
    length: int
    content: bytes = b""
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed: bool = False


@dataclass(frozen=True)
class Unanswered:
    """What happens to the answer of a call that was carried out: dropped, or held until `hold` is set."""

    method: str
    hold: threading.Event | None = None


@dataclass(frozen=True)
class ResponsePost:
    """A POST to a fake `response_url`."""

    token: str
    body: Any
    at: float


# --- Slack's limits --------------------------------------------------------------------------


def _too_long(value: Any, limit: int) -> bool:
    return isinstance(value, str) and len(value) > limit


def _text(obj: Any) -> Any:
    """The string of a text object (or None)."""
    return obj.get("text") if isinstance(obj, dict) else None


def _problem(limit: int, pointer: str) -> str:
    return f"[ERROR] must be less than {limit + 1} characters [json-pointer:{pointer}]"


def _element_problems(element: Any, pointer: str) -> list[str]:
    """Limits of interactive elements: buttons, plain_text_input, ids."""
    if not isinstance(element, dict):
        return [f"[ERROR] must be an object [json-pointer:{pointer}]"]
    problems: list[str] = []
    if _too_long(element.get("action_id"), 255):
        problems.append(_problem(255, f"{pointer}/action_id"))
    if element.get("type") == "button":
        for key, limit, sub in (("text", 75, "/text/text"), ("value", 2000, "/value"), ("url", 3000, "/url")):
            value = _text(element.get(key)) if key == "text" else element.get(key)
            if _too_long(value, limit):
                problems.append(_problem(limit, pointer + sub))
    if element.get("type") == "plain_text_input":
        if _too_long(element.get("initial_value"), 3000):
            problems.append(_problem(3000, f"{pointer}/initial_value"))
        max_length = element.get("max_length")
        if isinstance(max_length, int) and max_length > 3000:
            problems.append(f"[ERROR] must be at most 3000 [json-pointer:{pointer}/max_length]")
    return problems


def _section_problems(block: dict[str, Any], pointer: str) -> list[str]:
    problems: list[str] = []
    if _too_long(_text(block.get("text")), 3000):
        problems.append(_problem(3000, f"{pointer}/text/text"))
    fields = block.get("fields") or []
    if len(fields) > 10:
        problems.append(f"[ERROR] no more than 10 items allowed [json-pointer:{pointer}/fields]")
    for i, item in enumerate(fields):
        if _too_long(_text(item), 2000):
            problems.append(_problem(2000, f"{pointer}/fields/{i}/text"))
    if "accessory" in block:
        problems += _element_problems(block["accessory"], f"{pointer}/accessory")
    return problems


def _block_problems(block: Any, pointer: str) -> list[str]:
    """Limits of one layout block."""
    if not isinstance(block, dict) or "type" not in block:
        return [f"[ERROR] missing required field: type [json-pointer:{pointer}]"]
    problems: list[str] = []
    if _too_long(block.get("block_id"), 255):
        problems.append(_problem(255, f"{pointer}/block_id"))
    kind = block["type"]
    elements = block.get("elements") or []
    if kind == "section":
        problems += _section_problems(block, pointer)
    elif kind == "header" and _too_long(_text(block.get("text")), 150):
        problems.append(_problem(150, f"{pointer}/text/text"))
    elif kind == "context" and len(elements) > 10:
        problems.append(f"[ERROR] no more than 10 items allowed [json-pointer:{pointer}/elements]")
    elif kind == "actions":
        if len(elements) > 25:
            problems.append(f"[ERROR] no more than 25 items allowed [json-pointer:{pointer}/elements]")
        for i, element in enumerate(elements):
            problems += _element_problems(element, f"{pointer}/elements/{i}")
    elif kind == "input" and "element" in block:
        problems += _element_problems(block["element"], f"{pointer}/element")
    return problems


def blocks_problems(blocks: Any, max_blocks: int, pointer: str = "/blocks") -> list[str]:
    """Slack-style "[ERROR] ..." messages for a list of blocks; empty when valid."""
    if not isinstance(blocks, list):
        return [f"[ERROR] must provide an array [json-pointer:{pointer}]"]
    problems: list[str] = []
    if len(blocks) > max_blocks:
        problems.append(f"[ERROR] no more than {max_blocks} items allowed [json-pointer:{pointer}]")
    for i, block in enumerate(blocks):
        problems += _block_problems(block, f"{pointer}/{i}")
    return problems


def view_problems(view: Any) -> list[str]:
    """Slack-style messages for a modal view; empty when valid."""
    if not isinstance(view, dict):
        return ["[ERROR] must provide an object [json-pointer:/view]"]
    problems: list[str] = []
    for key in ("title", "submit", "close"):
        if _too_long(_text(view.get(key)), 24):
            problems.append(_problem(24, f"/view/{key}/text"))
    if _too_long(view.get("private_metadata"), 3000):
        problems.append(_problem(3000, "/view/private_metadata"))
    if _too_long(view.get("callback_id"), 255):
        problems.append(_problem(255, "/view/callback_id"))
    return problems + blocks_problems(view.get("blocks", []), 100, "/view/blocks")


def _truthy(value: Any) -> bool:
    """Slack's reading of a boolean argument that may arrive as a form string."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no")
    return bool(value)


def _failure(error: str, problems: list[str] | None = None) -> Answer:
    answer: Answer = {"ok": False, "error": error}
    if problems:
        answer["response_metadata"] = {"messages": problems}
    return answer


# Slack's undocumented total for the text of a message's blocks (bolt-js issues 2509, 2867).
BLOCKS_TEXT = 12000


def blocks_text(node: Any) -> int:
    """Characters in every `text` string anywhere in `node`, as Slack totals a message's blocks."""
    stack, total = [node], 0
    while stack:
        item = stack.pop()
        children = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for key, child in children:
            if key == "text" and isinstance(child, str):
                total += len(child)
            else:
                stack.append(child)
    return total


def message_problem(args: Args, *, require_content: bool = True) -> Answer | None:
    """The error Slack gives for a message's text/blocks/link_names, or None if it is fine."""
    if _truthy(args.get("link_names")) or args.get("parse") == "full":
        return _failure("invalid_arguments", ["[ERROR] overseer never sends link_names or parse=full"])
    text, blocks = args.get("text"), args.get("blocks")
    if require_content and not text and not blocks and not args.get("attachments"):
        return _failure("no_text")
    if _too_long(text, 40000):
        return _failure("msg_too_long")
    if blocks is not None:
        problems = blocks_problems(blocks, 50)
        if problems:
            return _failure("invalid_blocks", problems)
        if blocks_text(blocks) > BLOCKS_TEXT:
            return _failure("msg_blocks_too_long")  # Slack says no more than that
    return None


# --- request parsing -------------------------------------------------------------------------


def _maybe_json(value: str) -> Any:
    """Decode form values that hold JSON arrays or objects (blocks, files, view)."""
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _form_args(text: str) -> Args:
    return {key: _maybe_json(value) for key, value in parse_qsl(text, keep_blank_values=True)}


def parse_args(raw: bytes, content_type: str, query: str = "") -> Args:
    """Arguments of a Web API call: URL query merged with a JSON or form-urlencoded body.

    slack_sdk sends many methods (auth.test, files.*, users.info, ...) as query parameters
    with an empty body, some of them as GET; chat.*/views.* go as a JSON body.
    """
    return {**_form_args(query), **_body_args(raw, content_type)}


def _body_args(raw: bytes, content_type: str) -> Args:
    if not raw:
        return {}
    if "json" in content_type:
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}
        return parsed if isinstance(parsed, dict) else {"_json": parsed}
    return _form_args(raw.decode("utf-8", "replace"))


def _multipart_content(raw: bytes, content_type: str) -> bytes:
    """The first part's bytes of a multipart body (slack_sdk may upload either way)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else b""
    return b""


# --- the HTTP side ---------------------------------------------------------------------------


class _SlackHandler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        # slack_sdk sends conversations.info, users.info and usergroups.users.list as GET.
        raw = self.read_body()
        path, _, query = self.path.partition("?")
        if path.startswith("/api/"):
            self._web_api(self.owner, path.removeprefix("/api/"), raw, query)
        else:
            self.reply(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        raw = self.read_body()
        path, _, query = self.path.partition("?")
        fake: FakeSlack = self.owner
        if path.startswith("/api/"):
            self._web_api(fake, path.removeprefix("/api/"), raw, query)
        elif path.startswith("/upload/"):
            status, text = fake.receive_upload(path.removeprefix("/upload/"), self._file_bytes(raw))
            self.reply(status, text.encode(), "text/plain; charset=utf-8")
        elif path.startswith("/response/"):
            status, text = fake.receive_response(path.removeprefix("/response/"), raw)
            self.reply(status, text.encode(), "text/plain; charset=utf-8")
        else:
            self.reply(404, b"not found", "text/plain")

    def _file_bytes(self, raw: bytes) -> bytes:
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/"):
            return _multipart_content(raw, content_type)
        return raw

    def _web_api(self, fake: FakeSlack, method: str, raw: bytes, query: str) -> None:
        args = parse_args(raw, self.headers.get("Content-Type", ""), query)
        call = fake.record(method, args, dict(self.headers.items()), self.command)
        status, answer, headers = fake.answer(call)
        then = fake.after_answer(call)
        if then is not None:
            # Carried out, but the caller never hears of it: it dies (or is cut off) before the answer.
            deadline = time.monotonic() + 60
            while then.hold is not None and not then.hold.wait(0.05):
                if fake.stopping.is_set() or time.monotonic() > deadline:
                    break
            if then.hold is None or fake.stopping.is_set():
                self.drop()
                return
        self.reply_json(status, answer, headers)


class FakeSlack(LoopbackServer):
    """Fake Slack Web API for slack_sdk's `base_url`, with failure injection and recording."""

    handler_class = _SlackHandler

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self.usergroups: dict[str, list[str]] = {}
        # Extra fields merged into users.info answers, e.g. {"U0ALICE": {"tz": "Europe/Paris"}}.
        self.users: dict[str, dict[str, Any]] = {}
        self._urls = itertools.count(1)
        self._last_ts = 0.0
        self._clear()

    def _clear(self) -> None:
        self.calls: list[Call] = []
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._posted: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._uploads: dict[str, Upload] = {}
        self.responses: list[ResponsePost] = []
        self._fail: list[int] = []  # HTTP statuses for the next calls
        self._rate_limits: list[float] = []
        self._errors: dict[str, list[str]] = {}
        self._unanswered: list[Unanswered] = []
        self._seq = itertools.count(1)

    # --- addresses ---

    @property
    def api_url(self) -> str:
        """The `base_url` for WebClient/AsyncWebClient (trailing slash included)."""
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, token: str) -> str:
        """A fake `response_url`, unique per call like Slack's (so two requests never match); posts to it land
        in `responses` under `token`."""
        return f"http://127.0.0.1:{self.port}/response/{token}?request={next(self._urls)}"

    # --- failure injection ---

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next `n` Web API calls with HTTP `status`."""
        with self._lock:
            self._fail.extend([status] * n)

    def rate_limit_next(self, n: int = 1, retry_after: float = 1) -> None:
        """Answer the next `n` Web API calls with HTTP 429, Retry-After and error "ratelimited"."""
        with self._lock:
            self._rate_limits.extend([retry_after] * n)

    def error_next(self, method: str, error: str, n: int = 1) -> None:
        """Answer the next `n` calls of `method` with ok:false and `error`."""
        with self._lock:
            self._errors.setdefault(method, []).extend([error] * n)

    def accept_then_drop(self, method: str, n: int = 1, *, hold: threading.Event | None = None) -> None:
        """Carry out the next `n` calls of `method`, then drop the connection instead of answering (after
        `hold` is set, if given; answered normally once it is): what a caller killed after Slack accepted sees."""
        with self._lock:
            self._unanswered.extend([Unanswered(method, hold)] * n)

    def after_answer(self, call: Call) -> Unanswered | None:
        """How a carried-out call's answer is withheld, if one was asked for (see accept_then_drop)."""
        with self._lock:
            for i, rule in enumerate(self._unanswered):
                if rule.method == call.method and call.answered_ok:
                    return self._unanswered.pop(i)
        return None

    def down(self) -> None:
        """Close the port (and open connections): calls fail with connection errors."""
        self.stop()

    def up(self) -> None:
        """Listen again on the same port."""
        self.start()

    # --- recording and queries ---

    def reset(self) -> None:
        """Forget calls, stored messages, views, uploads and pending injected failures."""
        with self._lock:
            self._clear()

    def calls_to(self, method: str) -> list[Call]:
        """Recorded calls of one method, in order."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def posted(self, channel: str | None = None, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Messages as posted by successful chat.postMessage calls, optionally filtered."""
        with self._lock:
            return [
                copy.deepcopy(m)
                for m in self._posted
                if (channel is None or m["channel"] == channel)
                and (thread_ts is None or m.get("thread_ts") == thread_ts)
            ]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """Current state of a stored message (after updates), or None."""
        with self._lock:
            found = self._messages.get((channel, ts))
            return copy.deepcopy(found) if found else None

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Current state of the replies in a thread (not its parent), oldest first."""
        with self._lock:
            replies = [
                m
                for (chan, m_ts), m in self._messages.items()
                if chan == channel and m.get("thread_ts") == ts and m_ts != ts
            ]
            return copy.deepcopy(sorted(replies, key=lambda m: float(m["ts"])))

    @property
    def views(self) -> list[dict[str, Any]]:
        """Views opened or pushed (current state after updates), in order."""
        with self._lock:
            return copy.deepcopy(list(self._views.values()))

    @property
    def uploads(self) -> list[Upload]:
        """Uploads completed with files.completeUploadExternal, in order."""
        with self._lock:
            return [copy.copy(u) for u in self._uploads.values() if u.completed]

    def wait_for(self, predicate: Callable[[FakeSlack], Any], timeout: float = 5, what: str = "") -> Any:
        """Poll until predicate(fake) is truthy and return it; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while not (result := self._check(predicate, deadline, timeout, what)):
            time.sleep(0.01)
        return result

    async def wait_for_async(self, predicate: Callable[[FakeSlack], Any], timeout: float = 5, what: str = "") -> Any:
        """Like wait_for, but yields to the event loop (for an app running in the same loop)."""
        deadline = time.monotonic() + timeout
        while not (result := self._check(predicate, deadline, timeout, what)):
            await asyncio.sleep(0.01)
        return result

    def _check(self, predicate: Callable[[FakeSlack], Any], deadline: float, timeout: float, what: str) -> Any:
        """predicate(fake) once; once `deadline` has passed, a falsy answer is an AssertionError naming recent traffic."""
        result = predicate(self)
        if not result and time.monotonic() > deadline:
            raise AssertionError(self._timeout_message(predicate, timeout, what))
        return result

    def _timeout_message(self, predicate: Callable[..., Any], timeout: float, what: str) -> str:
        with self._lock:
            recent = [f"{c.method}({'ok' if c.answered_ok else c.error or c.status})" for c in self.calls[-15:]]
            texts = [str(m.get("text"))[:80] for m in self._posted[-5:]]
        name = what or getattr(predicate, "__name__", "predicate")
        return (
            f"FakeSlack: {name} not true after {timeout}s. {len(self.calls)} calls, last: {recent}; "
            f"last posted texts: {texts}"
        )

    # --- serving (called from handler threads) ---

    def record(self, method: str, args: Args, headers: dict[str, str], verb: str = "POST") -> Call:
        """Record a Web API call as it arrives."""
        call = Call(method, args, headers, time.monotonic(), verb=verb)
        with self._lock:
            self.calls.append(call)
        return call

    def answer(self, call: Call) -> tuple[int, Answer, dict[str, str]]:
        """HTTP status, body and headers for a recorded call; marks the call's outcome."""
        with self._lock:
            try:
                status, answer, headers = self._answer(call)
            except Exception as exc:  # a bug in the fake must not look like a network failure
                traceback.print_exc()
                status, answer, headers = 500, {"ok": False, "error": f"fake_slack_bug: {exc!r}"}, {}
            call.status = status
            call.answered_ok = status == 200 and bool(answer.get("ok"))
            call.error = None if call.answered_ok else answer.get("error")
            return status, answer, headers

    def _answer(self, call: Call) -> tuple[int, Answer, dict[str, str]]:
        if self._fail:
            return self._fail.pop(0), {"ok": False, "error": "fatal_error"}, {}
        if self._rate_limits:
            retry_after = self._rate_limits.pop(0)
            headers = {"Retry-After": str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)}
            return 429, {"ok": False, "error": "ratelimited"}, headers
        auth_error = _auth_error(call)
        if auth_error:
            return 200, {"ok": False, "error": auth_error}, {}
        injected = self._errors.get(call.method)
        if injected:
            return 200, {"ok": False, "error": injected.pop(0)}, {}
        handler = _METHODS.get(call.method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        return 200, handler(self, call.args), {}

    def next_ts(self) -> str:
        """A unique, increasing message ts from the clock, as Slack's are (`oldest`/`latest` compare with it)."""
        with self._lock:
            self._last_ts = max(round(time.time(), 6), self._last_ts + 0.000001)
            return f"{self._last_ts:.6f}"

    def receive_upload(self, file_id: str, content: bytes) -> tuple[int, str]:
        """Store bytes posted to an upload URL."""
        with self._lock:
            upload = self._uploads.get(file_id)
            if upload is None:
                return 404, "file not found"
            upload.content = content
            return 200, f"OK - {len(content)}"

    def receive_response(self, token: str, raw: bytes) -> tuple[int, str]:
        """Store a post to a response_url."""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self.responses.append(ResponsePost(token, body, time.monotonic()))
        return 200, "ok"

    # --- methods ---

    def _auth_test(self, args: Args) -> Answer:
        return {
            "ok": True,
            "url": "https://overseer-test.slack.com/",
            "team": "Overseer Test",
            "user": "overseer",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: Args) -> Answer:
        problem = message_problem(args)
        if problem:
            return problem
        channel = args.get("channel")
        if not channel:
            return _failure("channel_not_found")
        ts = self.next_ts()
        message = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "text": args.get("text") or "",
            "blocks": args.get("blocks") or [],
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
        }
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        if isinstance(args.get("metadata"), dict):
            message["metadata"] = copy.deepcopy(args["metadata"])
        self._messages[(channel, ts)] = message
        self._posted.append(copy.deepcopy(message))
        reply = {k: v for k, v in message.items() if k != "channel"}
        return {"ok": True, "channel": channel, "ts": ts, "message": reply}

    def _update(self, args: Args) -> Answer:
        problem = message_problem(args, require_content=False)
        if problem:
            return problem
        channel, ts = args.get("channel"), str(args.get("ts") or "")
        message = self._messages.get((channel, ts)) if isinstance(channel, str) else None
        if message is None:
            return _failure("message_not_found")
        if args.get("text") is None and args.get("blocks") is None:
            return _failure("no_text")
        # Like Slack, a field left out keeps its previous value.
        if args.get("text") is not None:
            message["text"] = args["text"]
        if args.get("blocks") is not None:
            message["blocks"] = args["blocks"]
        message["edited"] = {"user": BOT_USER_ID, "ts": self.next_ts()}
        reply = {k: v for k, v in message.items() if k != "channel"}
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"], "message": reply}

    def _post_ephemeral(self, args: Args) -> Answer:
        problem = message_problem(args)
        if problem:
            return problem
        if not args.get("channel") or not args.get("user"):
            return _failure("invalid_arguments", ["[ERROR] channel and user are required"])
        ts = self.next_ts()
        self.ephemerals.append(
            {
                "channel": args["channel"],
                "user": args["user"],
                "text": args.get("text") or "",
                "blocks": args.get("blocks") or [],
                "thread_ts": args.get("thread_ts"),
                "message_ts": ts,
            }
        )
        return {"ok": True, "message_ts": ts}

    def _view_open(self, args: Args) -> Answer:
        view = args.get("view")
        if problems := view_problems(view):
            return _failure("invalid_arguments", problems)
        if not args.get("trigger_id"):
            return _failure("invalid_trigger_id")
        view_id = f"V{next(self._seq):07d}"
        stored = self._stored_view(view_id, view)
        self._views[view_id] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _view_update(self, args: Args) -> Answer:
        view = args.get("view")
        if problems := view_problems(view):
            return _failure("invalid_arguments", problems)
        view_id = args.get("view_id") or self._view_id_by_external(args.get("external_id"))
        if view_id not in self._views:
            return _failure("not_found")
        stored = self._stored_view(view_id, view)
        self._views[view_id] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _view_id_by_external(self, external_id: Any) -> str | None:
        for view_id, view in self._views.items():
            if external_id and view.get("external_id") == external_id:
                return view_id
        return None

    def _stored_view(self, view_id: str, view: dict[str, Any]) -> dict[str, Any]:
        return {
            **copy.deepcopy(view),
            "id": view_id,
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": f"{time.time():.6f}.fake",
            "app_id": "A0TEST",
            "bot_id": BOT_ID,
        }

    def _usergroup_users(self, args: Args) -> Answer:
        group = args.get("usergroup")
        if group not in self.usergroups:
            return _failure("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    def _users_info(self, args: Args) -> Answer:
        user_id = str(args.get("user") or "")
        if not user_id:
            return _failure("user_not_found")
        name = user_id.lower()
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": f"User {user_id}",
            "deleted": False,
            "is_bot": user_id == BOT_USER_ID,
            "tz": "UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "profile": {"real_name": f"User {user_id}", "display_name": name},
        }
        user.update(copy.deepcopy(self.users.get(user_id, {})))
        return {"ok": True, "user": user}

    def _conversations_info(self, args: Args) -> Answer:
        channel = str(args.get("channel") or "")
        if not channel:
            return _failure("channel_not_found")
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "name": f"chan-{channel.lower()}",
                "is_channel": channel.startswith("C"),
                "is_private": channel.startswith("G"),
                "is_im": channel.startswith("D"),
                "is_member": True,
                "is_archived": False,
            },
        }

    def _connections_open(self, args: Args) -> Answer:
        # A WebSocket URL nothing answers on (the fake speaks no WebSocket): the client keeps trying.
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link/?ticket=fake"}

    def _history(self, args: Args) -> Answer:
        """conversations.history: the channel's top-level messages, newest first."""
        channel = str(args.get("channel") or "")
        found = [m for (chan, ts), m in self._messages.items() if chan == channel and m.get("thread_ts", ts) == ts]
        return _page(sorted(found, key=lambda m: -float(m["ts"])), args)

    def _replies(self, args: Args) -> Answer:
        """conversations.replies: a thread's parent and its replies, oldest first."""
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        if (channel, ts) not in self._messages:
            return _failure("thread_not_found")
        found = [m for (chan, m_ts), m in self._messages.items() if chan == channel and (m_ts == ts or m.get("thread_ts") == ts)]
        return _page(sorted(found, key=lambda m: float(m["ts"])), args)

    def _get_upload_url(self, args: Args) -> Answer:
        filename, length = args.get("filename"), args.get("length")
        if not filename or length in (None, ""):
            return _failure("invalid_arguments", ["[ERROR] filename and length are required"])
        if not str(length).isdigit():
            return _failure("invalid_arguments", ["[ERROR] length must be an integer"])
        file_id = f"F{next(self._seq):09d}"
        self._uploads[file_id] = Upload(file_id, str(filename), int(length))
        return {"ok": True, "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, args: Args) -> Answer:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            return _failure("invalid_arguments", ["[ERROR] files must be a non-empty array"])
        done = []
        for item in files:
            upload = self._uploads.get(item.get("id")) if isinstance(item, dict) else None
            if upload is None:
                return _failure("file_not_found")
            upload.title = item.get("title") or upload.filename
            upload.channel = args.get("channel_id") or args.get("channels")
            upload.thread_ts = args.get("thread_ts")
            upload.initial_comment = args.get("initial_comment")
            upload.completed = True
            done.append({"id": upload.file_id, "title": upload.title, "name": upload.filename})
        return {"ok": True, "files": done}


def _page(messages: list[dict[str, Any]], args: Args) -> Answer:
    """One page of messages as conversations.history/replies answer: oldest/latest, limit, cursor, and
    each message's metadata only with include_all_metadata."""
    inclusive = _truthy(args.get("inclusive"))
    oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or 1e12)

    def within(ts: float) -> bool:
        return oldest <= ts <= latest and (inclusive or ts not in (oldest, latest))

    inside = [m for m in messages if within(float(m["ts"]))]
    start, limit = int(args.get("cursor") or 0), int(args.get("limit") or 100)
    shown = [
        {k: v for k, v in m.items() if k != "channel" and (k != "metadata" or _truthy(args.get("include_all_metadata")))}
        for m in inside[start:start + limit]
    ]
    more = start + limit < len(inside)
    return {"ok": True, "messages": copy.deepcopy(shown), "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""}}


def _auth_error(call: Call) -> str | None:
    """Slack's answer to a missing token, or one of the wrong kind (app-level for Socket Mode, bot for the rest)."""
    header = call.headers.get("Authorization") or call.headers.get("authorization") or ""
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else call.args.get("token")
    if not token:
        return "not_authed"
    if not str(token).startswith("xapp-" if call.method == "apps.connections.open" else "xoxb-"):
        return "invalid_auth"
    return None


_METHODS: dict[str, Callable[[FakeSlack, Args], Answer]] = {
    "auth.test": FakeSlack._auth_test,
    "apps.connections.open": FakeSlack._connections_open,
    "chat.postMessage": FakeSlack._post_message,
    "chat.update": FakeSlack._update,
    "chat.postEphemeral": FakeSlack._post_ephemeral,
    "views.open": FakeSlack._view_open,
    "views.push": FakeSlack._view_open,
    "views.update": FakeSlack._view_update,
    "usergroups.users.list": FakeSlack._usergroup_users,
    "users.info": FakeSlack._users_info,
    "conversations.info": FakeSlack._conversations_info,
    "conversations.history": FakeSlack._history,
    "conversations.replies": FakeSlack._replies,
    "files.getUploadURLExternal": FakeSlack._get_upload_url,
    "files.completeUploadExternal": FakeSlack._complete_upload,
}
