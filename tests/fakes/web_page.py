"""A local web page for the fetch_page tool: serves fixed HTML and counts requests."""

from __future__ import annotations

import threading
from typing import Any

from tests.fakes.fake_model import LoopbackServer, QuietHandler

PAGE = """<!doctype html><html><head><title>Pricing</title><style>body{}</style></head>
<body><nav>Home | About</nav><h1>Our pricing</h1><p>Starter costs $10 a month.</p>
<script>track()</script><p>Pro costs $30 a month &amp; includes support.</p><footer>© us</footer></body></html>"""


class _PageHandler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        owner: WebPage = self.owner
        with owner.lock:
            owner.hits.append(self.path)
            owner.host_headers.append(self.headers.get("Host", ""))
            status, body, headers = owner.routes.get(self.path, (404, "not found", {}))
        headers = dict(headers)
        content_type = headers.pop("Content-Type", "text/html; charset=utf-8")
        self.reply(status, body.encode(), content_type, headers)


class WebPage(LoopbackServer):
    """Serves `PAGE` at /pricing (more routes via `routes`, a "Content-Type" among their headers replaces
    text/html), recording every path asked for and the Host header it came with."""

    handler_class = _PageHandler

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.hits: list[str] = []
        self.host_headers: list[str] = []
        self.routes: dict[str, tuple[int, str, dict[str, Any]]] = {"/pricing": (200, PAGE, {})}

    def url(self, path: str = "/pricing", host: str = "127.0.0.1") -> str:
        """The URL of a path on this server (by another name for it, with `host`)."""
        return f"http://{host}:{self.port}{path}"
