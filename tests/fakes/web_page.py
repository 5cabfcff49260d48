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
            status, body, headers = owner.routes.get(self.path, (404, "not found", {}))
        self.reply(status, body.encode(), "text/html; charset=utf-8", headers)


class WebPage(LoopbackServer):
    """Serves `PAGE` at /pricing (more routes via `routes`), recording every path asked for."""

    handler_class = _PageHandler

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.hits: list[str] = []
        self.routes: dict[str, tuple[int, str, dict[str, Any]]] = {"/pricing": (200, PAGE, {})}

    def url(self, path: str = "/pricing") -> str:
        """The URL of a path on this server."""
        return f"http://127.0.0.1:{self.port}{path}"
