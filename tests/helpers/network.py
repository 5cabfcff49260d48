"""Loopback servers a test starts itself: a free port to put one on, and whether it answers yet."""

from __future__ import annotations

import socket

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def answers_healthz(http: httpx.AsyncClient, url: str = "/healthz") -> bool:
    """Whether the server answers /healthz with 200 yet; not listening yet counts as no."""
    try:
        return (await http.get(url, timeout=1)).status_code == 200
    except httpx.HTTPError:
        return False
